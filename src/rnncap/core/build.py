"""Building a run's pieces from its composed config: task data, model, Lightning module,
trainer, the metrics.json keys that say what ran, and the final metrics. The solo run
(``rnncap.core.run``) and the population (``rnncap.core.population``) build with these.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities.imports import _RICH_AVAILABLE
from torch import nn

from rnncap.base.errors import ConfigError
from rnncap.core.hardware import trainer_hardware
from rnncap.core.module import RNNCapModule
from rnncap.core.sizing import hidden_for_budget
from rnncap.core.stack import RecurrentStack, count_parameters
from rnncap.tasks.base import TaskDataModule


@dataclass
class Job:
    """What ``train`` fits: a module (and its data), the keys that say what ran, the final
    results once trained, the trained models (one per member; a solo run's one), the gradient
    clipping the trainer applies, its extra callbacks and, where it differs from
    ``trainer.max_steps``, the steps the trainer runs."""

    module: pl.LightningModule
    datamodule: pl.LightningDataModule | None
    info: dict[str, Any]
    results: Callable[[], dict[str, Any]]
    models: Callable[[], list[nn.Module]]
    objective: str
    gradient_clip_val: float | None
    callbacks: list[pl.Callback] = field(default_factory=list)
    max_steps: int | None = None


def plain(node: Any) -> Any:
    """A config node as plain Python containers (resolved, enums as strings): what checkpoints
    (loaded with weights_only), loggers and constructors get."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def constructor_kwargs(node: DictConfig) -> dict[str, Any]:
    """A group node as constructor kwargs: ``name`` identifies the option and ``display`` says
    how figures show it; neither is an argument."""
    kwargs = plain(node)
    kwargs.pop("name", None)
    kwargs.pop("display", None)
    return kwargs


def compose_run_config(overrides: list[str], config_dir: Path, output_dir: str = ".") -> DictConfig:
    """The run config as ``python train.py <overrides>`` composes it, outside a Hydra app."""
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = output_dir
    return cfg


def instantiate_task(node: DictConfig, **changes: Any) -> TaskDataModule:
    """The task of a composed ``task`` node, its data not yet made: the class its ``_target_``
    names, given the node's config dataclass (``OmegaConf.to_object``; a saved run's plain
    node is merged onto the class's schema first) with ``changes``."""
    cls = get_class(node._target_)
    if OmegaConf.get_type(node) is not cls.config_type():
        node = OmegaConf.merge(OmegaConf.structured(cls.config_type()), plain(node))
    return cls(replace(OmegaConf.to_object(node), **changes))


def build_task(cfg: DictConfig) -> TaskDataModule:
    """The task's data module with its data generated (or loaded) from ``task.seed``."""
    task = instantiate_task(cfg.task)
    task.setup("fit")
    return task


def build_model(cfg: DictConfig, task: TaskDataModule) -> RecurrentStack:
    """The stack of ``cfg.depth`` cells, sized by ``model.hidden`` or ``model.budget``."""
    cell = instantiate(constructor_kwargs(cfg.cell), _partial_=True)
    hidden = cfg.model.hidden
    if hidden is None:
        sizes = (cfg.depth, task.input_size, task.output_size, cfg.model.budget)
        try:
            hidden = hidden_for_budget(cell, *sizes)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    return RecurrentStack(cell, cfg.depth, task.input_size, hidden, task.output_size)


def build_module(cfg: DictConfig, model: RecurrentStack, task: TaskDataModule) -> RNNCapModule:
    """The LightningModule: the model trained on the task's loss with the configured optimiser."""
    return RNNCapModule(
        model,
        task,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        config=plain(cfg),
    )


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


class StepProgressBar(RichProgressBar):
    """Lightning's progress bar, counting optimiser steps up to ``max_steps``: training is one
    endless epoch, so the epoch bar read ``Epoch 0/-2`` (``max_epochs`` is -1)."""

    @property
    def total_train_batches(self) -> int:
        return self.trainer.max_steps

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'steps':{len(self.validation_description)}}"


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    logger: Any,
    gradient_clip_val: float | None,
    callbacks: list[pl.Callback] | None = None,
    max_steps: int | None = None,
) -> pl.Trainer:
    """A Trainer from ``cfg.trainer`` (Lightning's own arguments) and ``cfg.hardware``; the
    training batches never end an epoch, so evaluation follows ``val_check_interval`` steps."""
    args = plain(cfg.trainer)
    every = args.pop("checkpoint_every")
    if max_steps is not None:
        args["max_steps"] = max_steps
    if args["enable_progress_bar"] is None:
        args["enable_progress_bar"] = sys.stderr.isatty()
    callbacks = list(callbacks or [])
    if args["enable_progress_bar"] and _RICH_AVAILABLE:
        callbacks.append(StepProgressBar())
    if every is not None:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="last",
                every_n_train_steps=every,
                enable_version_counter=False,
            )
        )
    return pl.Trainer(
        **trainer_hardware(plain(cfg.hardware)),
        **args | {"gradient_clip_val": gradient_clip_val},
        max_epochs=-1,
        check_val_every_n_epoch=None,  # val_check_interval counts steps across the endless epoch
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        log_every_n_steps=min(50, args["val_check_interval"]),
        enable_model_summary=False,
        enable_checkpointing=every is not None,
        num_sanity_val_steps=0,
        default_root_dir=run_dir,
        use_distributed_sampler=False,
    )


def final_metrics(
    model: nn.Module, diverged: bool, task: TaskDataModule, params: int
) -> dict[str, Any]:
    """The task's settings and final metrics on the evaluation set; a run whose loss,
    parameters or final metrics are not finite is ``diverged`` and its metrics are null."""
    metrics = task.evaluate(model, params)
    finite = all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    finite = finite and all(bool(p.isfinite().all()) for p in model.parameters())
    if diverged or not finite:
        return {"status": "diverged", **task.settings(), **dict.fromkeys(metrics)}
    return {"status": "ok", **task.settings(), **metrics}
