"""One training run, in the order of the data-flow sketch:
validate -> seed -> task data -> model -> module -> trainer -> fit -> evaluate -> metrics.json.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnncap.core.config import ConfigError, validate
from rnncap.core.hardware import is_rank_zero, trainer_hardware
from rnncap.core.io import write_json_atomic
from rnncap.core.loggers import build_logger, finish_loggers, log_final
from rnncap.core.module import RNNCapModule
from rnncap.core.sizing import hidden_for_budget
from rnncap.core.stack import RecurrentStack, count_parameters
from rnncap.tasks.base import TaskDataModule

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def _without_name(node: DictConfig) -> dict[str, Any]:
    """A group node as constructor kwargs: ``name`` identifies the option, it is no argument."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    kwargs.pop("name", None)
    return kwargs


def build_model(cfg: DictConfig, task: TaskDataModule) -> RecurrentStack:
    """The stack of ``cfg.depth`` cells, sized by ``model.hidden`` or ``model.budget``."""
    cell = instantiate(_without_name(cfg.cell), _partial_=True)
    hidden = cfg.model.hidden
    if hidden is None:
        sizes = (cfg.depth, task.input_size, task.output_size, cfg.model.budget)
        try:
            hidden = hidden_for_budget(cell, *sizes)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    return RecurrentStack(cell, cfg.depth, task.input_size, hidden, task.output_size)


def run_info(cfg: DictConfig, model: RecurrentStack, task: TaskDataModule) -> dict[str, Any]:
    """The metrics.json keys that say what ran (a population adds its own)."""
    return {
        "cell": cfg.cell.name,
        "task": cfg.task.name,
        "depth": cfg.depth,
        "hidden": model.hidden_size,
        "input_dim": task.input_size,
        "params": count_parameters(model),
    }


def build_trainer(cfg: DictConfig, run_dir: Path, logger: Any) -> pl.Trainer:
    hw, tr = cfg.hardware, cfg.trainer
    callbacks = []
    if tr.checkpoint_every is not None:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="last",
                every_n_train_steps=tr.checkpoint_every,
                enable_version_counter=False,
            )
        )
    progress = sys.stderr.isatty() if tr.progress_bar is None else tr.progress_bar
    return pl.Trainer(
        **trainer_hardware(hw),
        max_steps=tr.max_steps,
        max_epochs=-1,
        gradient_clip_val=tr.gradient_clip_val,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        log_every_n_steps=min(50, tr.eval_every),
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=bool(callbacks),
        num_sanity_val_steps=0,
        default_root_dir=run_dir,
        use_distributed_sampler=False,
    )


def train(cfg: DictConfig) -> float | None:
    """Train one model as configured, write ``metrics.json`` and return the sweep objective."""
    run_dir = Path(cfg.output_dir)
    rank_zero = is_rank_zero()  # under DDP only rank 0 logs and writes metrics.json
    if rank_zero:  # never leave an earlier run's result, not even when this one is refused
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
    validate(cfg)
    check_resumable(cfg, run_dir / "checkpoints" / "last.ckpt")
    if cfg.model.get("population", 1) != 1:  # K models in one module: rnncap.core.population
        from rnncap.core.population import train_population

        return train_population(cfg)
    torch.set_num_threads(cfg.hardware.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    task: TaskDataModule = instantiate(
        _without_name(cfg.task), steps_per_epoch=cfg.trainer.eval_every
    )
    task.setup("fit")
    model = build_model(cfg, task)
    info = {**run_info(cfg, model, task), "seed": cfg.seed}
    params = info["params"]
    log.info("model: %s", info)
    module = RNNCapModule(
        model,
        task,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    logger = build_logger(cfg, run_dir, info) if rank_zero else None
    try:
        trainer = build_trainer(cfg, run_dir, logger)
        fit(trainer, module, task, run_dir / "checkpoints" / "last.ckpt")
        if not trainer.is_global_zero:
            return None  # the model is the same in every process: rank 0 scores it
        # the whole evaluation set, in this process (not a shard)
        results = {**info, **finish(module, task, params)}
        write_json_atomic(run_dir / METRICS_FILE, results)
        log_final(logger, results)
        log.info("results: %s", results)
    finally:
        finish_loggers(logger)
    value = results.get(task.objective)
    return None if value is None else float(value)


# what defines a run: a checkpoint may resume on other hardware, loggers or step counts only
RUN_DEFINING_KEYS = ("cell", "task", "depth", "seed", "model", "optimizer", "scheduler")


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(old.keys() | new.keys())
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_resumable(cfg: DictConfig, last: Path) -> None:
    """Refuse to resume a checkpoint that another config wrote into the same run dir."""
    if not last.exists():
        return
    saved = torch.load(last, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    saved = saved.get("config")
    if not saved:
        return
    current = OmegaConf.to_container(cfg, resolve=True)
    diffs = [
        d
        for key in RUN_DEFINING_KEYS
        for d in _differences(saved.get(key), current.get(key), f"{key}.")
    ]
    if diffs:
        raise ConfigError(
            f"{last.parent.parent} holds a checkpoint of another config ({'; '.join(diffs[:3])}): "
            "use another hydra.run.dir, or delete its checkpoints/ to start over"
        )


def fit(trainer: pl.Trainer, module: RNNCapModule, task: TaskDataModule, last: Path) -> None:
    """Train, resuming from ``last`` when a checkpoint is there. The training batches are a
    function of the global step (``StepBatches``), so a checkpoint saved mid-epoch resumes
    exactly; Lightning's warning about mid-epoch resumption does not apply."""
    if last.exists():
        log.info("resuming from checkpoint %s", last)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
        trainer.fit(module, datamodule=task, ckpt_path=last if last.exists() else None)


def finish(module: RNNCapModule, task: TaskDataModule, params: int) -> dict[str, Any]:
    """The task's settings and final metrics on the evaluation set; a run whose loss,
    parameters or final metrics are not finite is ``diverged`` and its metrics are null."""
    metrics = task.evaluate(module.model, params)
    finite = all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    finite = finite and all(bool(p.isfinite().all()) for p in module.model.parameters())
    if module.diverged or not finite:
        return {"status": "diverged", **task.settings(), **dict.fromkeys(metrics)}
    return {"status": "ok", **task.settings(), **metrics}
