"""One training run, as one sequence:
validate -> resume check -> seed and build the job -> logger -> fit -> results -> metrics.json.

A job is a solo model (below) or a population of K models of one shape
(``model.population=K``, ``rnncap.core.population``); everything else is the same.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError
from rnncap.base.io import write_atomic, write_json_atomic
from rnncap.core.build import (
    Job,
    build_model,
    build_module,
    build_task,
    build_trainer,
    final_metrics,
    plain,
    run_info,
)
from rnncap.core.hardware import is_rank_zero
from rnncap.core.loggers import build_logger, finish_loggers, log_final
from rnncap.core.population import population_job
from rnncap.core.trial_report import PruningCallback, build_reporter
from rnncap.core.validate import validate

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
# the trained weights: {"members": [state dict, ...]}, one per member (a solo run's one),
# plain tensors (torch.load(..., weights_only=True)); written before metrics.json
WEIGHTS_FILE = "weights.pt"
# what defines a run: a checkpoint may resume on other hardware, loggers or step counts only
RUN_DEFINING_KEYS = ("cell", "task", "depth", "seed", "model", "optimizer", "scheduler")


def train(cfg: DictConfig) -> float | None:
    """Train as configured, write ``metrics.json`` and return the sweep objective."""
    run_dir = Path(cfg.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if is_rank_zero():  # never leave an earlier run's result, not even when this one is refused
        for name in (METRICS_FILE, WEIGHTS_FILE):
            (run_dir / name).unlink(missing_ok=True)
    validate(cfg)
    check_resumable(cfg, last)
    torch.set_num_threads(cfg.hardware.threads)
    job = population_job(cfg) if cfg.model.population > 1 else solo_job(cfg)
    log.info("model: %s", job.info)
    logger = build_logger(cfg, run_dir) if is_rank_zero() else None
    try:
        clip, callbacks = job.gradient_clip_val, job.callbacks
        trainer = build_trainer(cfg, run_dir, logger, clip, callbacks, job.max_steps)
        fit(trainer, job, last)
        if not trainer.is_global_zero:
            return None  # the model is the same in every process: rank 0 scores it
        results = job.results()
        if cfg.save_weights:
            save_weights(run_dir / WEIGHTS_FILE, job.models())
        write_json_atomic(run_dir / METRICS_FILE, results)
        log_final(logger, results)
        log.info("results: %s", {k: v for k, v in results.items() if k != "members"})
        log.info("wrote %s", (run_dir / METRICS_FILE).resolve())
    finally:
        finish_loggers(logger)
    value = results.get(job.objective)
    return None if value is None else float(value)


def solo_job(cfg: DictConfig) -> Job:
    """One model: seeded, built and scored on the whole evaluation set (not a DDP shard)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task = build_task(cfg)
    model = build_model(cfg, task)
    info = {**run_info(cfg, model, task), "seed": cfg.seed}
    module = build_module(cfg, model, task)
    reporter = build_reporter(cfg)
    pruning = [] if reporter is None else [PruningCallback(reporter, task, info["params"])]

    def results() -> dict[str, Any]:
        metrics = final_metrics(module.model, module.diverged, task, info["params"])
        metrics.update(module.training_losses())  # first_loss, final_loss
        if pruning and pruning[0].pruned and metrics["status"] == "ok":
            metrics["status"] = "pruned"
        if module.record is not None:  # rnncap.core.convergence
            metrics["convergence"] = module.convergence(metrics.get("bits"))
        return {**info, **metrics}

    clip = cfg.trainer.gradient_clip_val
    return Job(module, task, info, results, lambda: [module.model], task.objective, clip, pruning)


def save_weights(path: Path, models: list[torch.nn.Module]) -> None:
    """Every member's final parameters and buffers (CPU copies) in one file, atomically."""
    members = [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in models]
    write_atomic(path, lambda f: torch.save({"members": members}, f), binary=True)


def fit(trainer: pl.Trainer, job: Job, last: Path) -> None:
    """Train, resuming from ``last`` when a checkpoint is there. The training batches are a
    function of the global step (``StepBatches``), so a checkpoint saved mid-epoch resumes
    exactly; Lightning's warning about mid-epoch resumption does not apply."""
    if last.exists():
        log.info("resuming from checkpoint %s", last)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
        trainer.fit(
            job.module, datamodule=job.datamodule, ckpt_path=last if last.exists() else None
        )


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf where two nested dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(old.keys() | new.keys())
        return [d for k in keys for d in differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_resumable(cfg: DictConfig, last: Path) -> None:
    """Refuse to resume a checkpoint that another config wrote into the same run dir."""
    if not last.exists():
        return
    saved = torch.load(last, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    saved = saved.get("config")
    if not saved:
        return
    current = plain(cfg)
    for config in (saved, current):  # how figures show the cell defines no run
        (config.get("cell") or {}).pop("display", None)
    diffs = [
        d
        for key in RUN_DEFINING_KEYS
        for d in differences(saved.get(key), current.get(key), f"{key}.")
    ]
    if diffs:
        raise ConfigError(
            f"{last.parent.parent} holds a checkpoint of another config ({'; '.join(diffs[:3])}): "
            "use another hydra.run.dir, or delete its checkpoints/ to start over"
        )
