"""What a task provides: seeded data as a LightningDataModule, plus its loss and metrics.

A task generates (or loads) tensors of inputs [S, T, I] and targets, serves them in batches
(full batch when ``batch_size`` is None), one batch per optimiser step for as long as the
trainer asks (the trainer's ``max_steps`` and ``val_check_interval`` say when to stop and to
evaluate), and knows how to score model outputs [B, T, O].
A task whose ``data_file`` is set loads the sets that ``save_data`` wrote (``rnncap generate``)
instead of generating them, after checking they were generated with the same settings.

Its config is a ``TaskConfig`` subclass beside the task class, found by
``rnncap.core.schema.task_configs``; ``conf/task/<module>.yaml`` names it in its defaults.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import II, MISSING
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded

Batch = tuple[Tensor, ...]
# config keys that name the option or say how data is served or found, not which data it is
NOT_DATA = {"_target_", "name", "batch_size", "data_file"}


@dataclass
class TaskConfig:
    """The keys every task takes; a task's config subclasses it beside the task's class."""

    _target_: str = MISSING
    name: str = MISSING
    seed: int = bounded(II("seed"), ge=0)  # data seed (defaults to the run seed)
    batch_size: int | None = bounded(None, ge=1)  # samples per training step; null = full batch


class TensorBatches(Dataset):
    """Tensors indexed a whole batch at a time (``__getitems__``: no per-sample collate)."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> Batch:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> Batch:
        if len(indices) == len(self):
            return self.tensors  # full batch: no copy
        idx = torch.as_tensor(indices)
        return tuple(t[idx] for t in self.tensors)


def whole_batch(batch: Batch) -> Batch:
    """The collate function of ``TensorBatches``: the batch is already stacked."""
    return batch


class RepeatedFullBatch:
    """A batch sampler that yields all indices at every step, endlessly (full-batch training:
    the trainer's ``max_steps`` ends it)."""

    def __init__(self, size: int) -> None:
        self.indices = list(range(size))

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.repeat(self.indices)


_SHUFFLE_STREAM = 1  # keeps the shuffling stream apart from the data-generation stream


class StepBatches(Sampler[list[int]]):
    """The index batch of every optimiser step, a pure function of (seed, global step).

    Endless: the trainer's ``max_steps`` ends training, its ``val_check_interval`` (counted in
    steps, not epochs) sets when to evaluate. Full batch (``batch_size`` None or >= size):
    every step sees all indices. Minibatches:
    consecutive ``batch_size`` slices of an endless stream of permutations, permutation ``p``
    drawn from ``numpy.random.default_rng((seed, 1, p))``. An iterator starts at the step
    ``start_step()`` returns when it is created (the trainer's global step), so a run resumed
    from a checkpoint, even one saved mid-epoch, sees exactly the batches of an uninterrupted
    run. Under DDP process ``rank`` of ``world`` takes every ``world``-th index of each batch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        start_step: Callable[[], int] | None = None,
    ) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.batch_size = size if batch_size is None else min(batch_size, size)
        self.start_step = start_step
        self._perms: dict[int, np.ndarray] = {}

    def _permutation(self, index: int) -> np.ndarray:
        if index not in self._perms:  # keep the latest two: a batch may straddle two
            rng = np.random.default_rng((self.seed, _SHUFFLE_STREAM, index))
            kept = {k: v for k, v in self._perms.items() if k == index - 1}
            self._perms = {**kept, index: rng.permutation(self.size)}
        return self._perms[index]

    def batch(self, step: int) -> list[int]:
        """All indices of global step ``step`` (before sharding)."""
        if self.batch_size == self.size:
            return list(range(self.size))
        position, out = step * self.batch_size, []
        while len(out) < self.batch_size:
            p, offset = divmod(position + len(out), self.size)
            out.extend(self._permutation(p)[offset : offset + self.batch_size - len(out)].tolist())
        return out

    def __iter__(self) -> Iterator[list[int]]:
        first = self.start_step() if self.start_step is not None else 0  # read now, not lazily
        return (self.batch(s)[self.rank :: self.world] for s in itertools.count(first))


class TaskDataModule(pl.LightningDataModule):
    """Base class of every task. Subclasses implement ``generate``, ``loss`` and ``metrics``,
    and annotate ``config`` with their config class."""

    config: TaskConfig

    name: str = "task"
    objective: str = "loss"  # the metric a sweep optimises
    objective_direction: str = "minimize"

    def __init__(self, config: TaskConfig) -> None:
        """``config`` is the task's config dataclass (``OmegaConf.to_object`` of the composed
        ``task`` node): the task reads its settings from it, so each key is written once."""
        super().__init__()
        self.config = config
        self.train_set: TensorBatches | None = None
        self.eval_set: TensorBatches | None = None

    @classmethod
    def config_type(cls) -> type[TaskConfig]:
        """The task's config dataclass: the type of its ``config`` attribute."""
        return inspect.get_annotations(cls, eval_str=True)["config"]

    @classmethod
    def with_keys(cls, **keys: Any) -> TaskDataModule:
        """The task with ``keys`` over its config class's defaults, ``seed`` 0 unless given
        (outside a composed config, where ``${seed}`` has nothing to resolve against)."""
        return cls(cls.config_type()(**{"seed": 0, **keys}))

    @property
    def seed(self) -> int:
        """The data seed (``task.seed``): it draws the data and orders the batches."""
        return self.config.seed

    @property
    def batch_size(self) -> int | None:
        """Samples per training step (``task.batch_size``); None = full batch."""
        return self.config.batch_size

    @property
    def data_file(self) -> str | None:
        """The file of saved sets to load (tasks whose config has ``data_file``), else None."""
        return getattr(self.config, "data_file", None)

    @classmethod
    def check_config(cls, node: Any) -> None:
        """Raise ``ConfigError`` (one line naming the key) on bad combinations of the task's
        values; single values are checked from the config's field metadata."""

    # -- sizes of the model's input and readout
    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    # -- data
    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        """Return (training set, evaluation set), drawing all randomness from ``generator``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and self.data_file:
            self.train_set, self.eval_set = self.load_data(self.data_file)
        elif self.train_set is None:
            self.train_set, self.eval_set = self.generate(
                torch.Generator().manual_seed(self.config.seed)
            )

    def data_key(self) -> dict[str, Any]:
        """The task name and the config keys that determine its data (seed included)."""
        keys = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        return {"task": self.name, **{k: v for k, v in keys.items() if k not in NOT_DATA}}

    def save_data(self, path: str | Path) -> None:
        """Generate the sets from ``seed`` and save them, keyed by ``data_key``, to ``path``."""
        train, evaluate = self.generate(torch.Generator().manual_seed(self.config.seed))
        data = {"key": self.data_key(), "train": train.tensors, "eval": evaluate.tensors}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)

    def load_data(self, path: str | Path) -> tuple[TensorBatches, TensorBatches]:
        """The sets saved by ``save_data``; a file generated with other settings is refused."""
        if not Path(path).is_file():
            raise ConfigError(f"task.data_file={path} does not exist (see `rnncap generate data`)")
        data = torch.load(path, weights_only=True)
        if data["key"] != self.data_key():
            raise ConfigError(
                f"task.data_file={path} holds data for {data['key']}, not for this run's "
                f"{self.data_key()}: regenerate it or drop task.data_file"
            )
        return TensorBatches(*data["train"]), TensorBatches(*data["eval"])

    @property
    def step_batch_size(self) -> int:
        """Samples per optimiser step over all processes."""
        size = len(self.train_set)
        return size if self.config.batch_size is None else min(self.config.batch_size, size)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        batches = StepBatches(
            len(self.train_set),
            self.config.batch_size,
            seed=self.config.seed,
            rank=rank,
            world=world,
            start_step=self._global_step,
        )
        return DataLoader(self.train_set, batch_sampler=batches, collate_fn=whole_batch)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader()

    def eval_dataloader(self, dataset: Dataset | None = None) -> DataLoader:
        """Batches over ``dataset`` (default: the evaluation set) in order, once."""
        dataset = self.eval_set if dataset is None else dataset
        size = len(dataset)
        batches = BatchSampler(range(size), self.config.batch_size or size, drop_last=False)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=whole_batch)

    def settings(self) -> dict[str, Any]:
        """Task settings reported in metrics.json next to the measurements."""
        return {}

    # -- scoring
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Training loss of readouts [B, T, O] on a batch."""
        raise NotImplementedError

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        """Sums over the batch, keyed by name, plus ``count``: summed over batches by
        ``evaluate`` and turned into means by ``summarise``."""
        raise NotImplementedError

    def summarise(self, totals: dict[str, float], params: int) -> dict[str, Any]:
        """Final task metrics from the summed batch metrics."""
        count = totals.pop("count")
        return {k: v / count for k, v in totals.items()}

    def evaluate(self, model: torch.nn.Module, params: int) -> dict[str, Any]:
        """Score ``model`` on the whole evaluation set."""
        return self.summarise(self.totals(model, self.eval_dataloader()), params)

    @torch.no_grad()
    def totals(self, model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
        """The batch metrics of ``model`` summed over ``loader``."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        for batch in loader:
            batch = tuple(t.to(device) for t in batch)
            for key, value in self.metrics(model(batch[0]), batch).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        model.train(was_training)
        return totals
