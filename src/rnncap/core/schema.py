"""The structured configs of a run, stored in Hydra's ConfigStore so that composing checks
types and refuses unknown keys; ranges and choices are field metadata (``rnncap.base.fields``)
that ``rnncap.core.validate`` walks.

Each config file names its schema in its defaults list: ``conf/train.yaml`` starts from
``run_schema``, a cell's YAML from ``/schema/cell/base`` (the shared cell keys) or from its own
module's config class, ``/schema/cell/<module>``, a task's from ``/schema/task/<module>``: the
config classes sit beside their modules in ``rnncap.cells`` and ``rnncap.tasks``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, is_dataclass
from enum import Enum
from types import ModuleType
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

import rnncap.cells
import rnncap.tasks
from rnncap.base.fields import bounded, choice
from rnncap.cells.config import CellConfig
from rnncap.tasks.base import TaskConfig

PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")


class Accelerator(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


class Strategy(str, Enum):
    auto = "auto"  # one device
    ddp = "ddp"  # N processes started by re-running the command line
    ddp_spawn = "ddp_spawn"  # N processes spawned from the job (usable inside -m sweeps)


@dataclass
class HardwareConfig:
    """Trainer arguments of the ``hardware`` group (``rnncap.core.hardware``)."""

    name: str = "cpu"
    accelerator: Accelerator = Accelerator.cpu
    devices: int = bounded(1, ge=1)  # processes, one device each
    strategy: Strategy = Strategy.auto
    backend: str | None = choice(None, None, "gloo", "nccl")  # null = Lightning's choice
    precision: str = choice("32-true", *PRECISIONS)
    deterministic: Any = choice(True, True, False, "warn")
    threads: int = bounded(1, ge=1)  # torch threads per process


@dataclass
class OptimizerConfig:
    """A torch optimiser, bound to the parameters in ``configure_optimizers``."""

    _target_: str = MISSING
    _partial_: bool = True
    lr: float = bounded(0.01, gt=0)
    weight_decay: float = bounded(0.0, ge=0)  # L2


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    momentum: float = bounded(0.0, ge=0)
    nesterov: bool = False


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    alpha: float = bounded(0.99, ge=0)
    momentum: float = bounded(0.0, ge=0)


@dataclass
class SchedulerConfig:
    """Learning-rate decay stepped every optimiser step: lr_t = lr * gamma^t."""

    _target_: str = "torch.optim.lr_scheduler.ExponentialLR"
    _partial_: bool = True
    gamma: float = bounded(1.0, gt=0)


@dataclass
class TrainerConfig:
    """Lightning Trainer arguments (same names), plus the checkpoint interval."""

    max_steps: int = bounded(2000, ge=1)
    val_check_interval: int = bounded(100, ge=1)  # optimiser steps between evaluations
    gradient_clip_val: float | None = bounded(None, gt=0)  # gradient-norm clipping; null = none
    checkpoint_every: int | None = bounded(500, ge=1)  # steps between checkpoints; null = none
    enable_progress_bar: bool | None = None  # null = on when stderr is a terminal


@dataclass
class HalvingConfig:
    """Successive halving inside a population job (``rnncap.core.halving``): K members start
    at ``min_steps``; after each rung the best 1/eta continue, eta times as long, up to
    ``max_steps`` (null: ``trainer.max_steps``). ``eta: null`` = no halving."""

    eta: int | None = None
    min_steps: int | None = None
    max_steps: int | None = None


@dataclass
class ModelConfig:
    """The stack's size: a width, or the largest width under a parameter budget."""

    hidden: int | None = bounded(None, ge=1)  # units per layer N
    budget: int | None = bounded(None, ge=1)  # total trainable parameters P
    population: int = bounded(1, ge=1)  # K > 1: K models of this shape in one job
    members: Any = None  # per-member lists of length K (rnncap.core.population)
    halving: HalvingConfig = field(default_factory=HalvingConfig)  # successive halving


@dataclass
class TrialConfig:
    """Set by the tuner (``hydra.sweeper``), not by hand: the Optuna trials this run reports
    its objective to at every evaluation (one per population member), and the pruner that may
    stop them early (``rnncap.core.trial_report``)."""

    storage: str | None = None  # the study's storage, as an absolute URL
    study: str | None = None  # the study's name
    numbers: list[int] | None = None  # trial numbers, one per population member
    pruner: str | None = None  # null | median | hyperband | percentile | successive_halving
    pruner_args: Any = None  # a dict: the Optuna pruner's arguments


@dataclass
class RunConfig:
    """One training run (``conf/train.yaml``); the groups bring their own schemas."""

    depth: int = bounded(1, ge=1)
    seed: int = bounded(0, ge=0)
    experiment_name: str = "default"
    output_dir: str | None = MISSING  # the run dir; null where no run is made (--cfg job)
    save_weights: bool = True  # the trained weights in <run dir>/weights.pt (rnncap precision)
    model: ModelConfig = field(default_factory=ModelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    cell: Any = MISSING
    task: Any = MISSING
    optimizer: Any = MISSING
    hardware: Any = MISSING
    logger: Any = None


def configs_beside(package: ModuleType, base: type) -> dict[str, type]:
    """The config classes (dataclasses subclassing ``base``) defined in the modules of
    ``package``, by module name: a module defines at most one."""
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if (
                is_dataclass(value)
                and defined_here
                and issubclass(value, base)
                and value is not base
            ):
                found[info.name] = value
    return found


def task_configs() -> dict[str, type[TaskConfig]]:
    """Every task module's config class, by module name (``/schema/task/<module>``)."""
    return configs_beside(rnncap.tasks, TaskConfig)


def cell_configs() -> dict[str, type[CellConfig]]:
    """The shared cell keys (``/schema/cell/base``) and every cell module's own config class,
    where a cell takes keys beyond them (``/schema/cell/<module>``)."""
    return {"base": CellConfig} | configs_beside(rnncap.cells, CellConfig)


OPTIMIZERS = {"adam": AdamConfig, "sgd": SGDConfig, "rmsprop": RMSpropConfig}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, node in cell_configs().items():
        store.store(group="schema/cell", name=name, node=node)
    store.store(group="schema", name="hardware", node=HardwareConfig)
    for name, node in OPTIMIZERS.items():
        store.store(group="schema/optimizer", name=name, node=node)
    for name, node in task_configs().items():
        store.store(group="schema/task", name=name, node=node)
