"""What a task provides: seeded data as a LightningDataModule, plus its loss and metrics.

A task generates (or loads) tensors of inputs [S, T, I] and targets, serves them in batches
(full batch when ``batch_size`` is None), and knows how to score model outputs [B, T, O].
An epoch is ``steps_per_epoch`` optimiser steps; evaluation runs after each epoch.
A task whose ``data_file`` is set loads the sets that ``save_data`` wrote (``rnncap.generate``)
instead of generating them, after checking they were generated with the same settings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from rnncap.core.config import ConfigError, _check_number

Batch = tuple[Tensor, ...]
# key -> (type, minimum, exclusive minimum?, nullable), as in ``rnncap.core.config.NUMERIC_RULES``
Rules = dict[str, tuple[type, float, bool, bool]]
# constructor arguments that say how data is served or found, not which data it is
_NOT_DATA = {"self", "batch_size", "steps_per_epoch", "data_file"}


def check_numbers(node: Any, rules: Rules) -> None:
    """Check a task node's numeric keys against ``rules``; errors name ``task.<key>``."""
    for key, rule in rules.items():
        if key in node:
            _check_number(f"task.{key}", node[key], *rule)


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


def _identity(batch: Batch) -> Batch:
    return batch


class RepeatedFullBatch:
    """A batch sampler that yields all indices ``steps`` times (full-batch training)."""

    def __init__(self, size: int, steps: int) -> None:
        self.indices, self.steps = list(range(size)), steps

    def __iter__(self):
        return (self.indices for _ in range(self.steps))

    def __len__(self) -> int:
        return self.steps


_SHUFFLE_STREAM = 1  # keeps the shuffling stream apart from the data-generation stream


class StepBatches(Sampler[list[int]]):
    """The index batch of every optimiser step, a pure function of (seed, global step).

    Full batch (``batch_size`` None or >= size): every step sees all indices. Minibatches:
    consecutive ``batch_size`` slices of an endless stream of permutations, permutation ``p``
    drawn from ``numpy.random.default_rng((seed, 1, p))``. An iterator starts at the step
    ``start_step()`` returns when it is created (the trainer's global step), so a run resumed
    from a checkpoint, even one saved mid-epoch, sees exactly the batches of an uninterrupted
    run. Under DDP process ``rank`` of ``world`` takes every ``world``-th index of each batch.
    """

    def __init__(
        self,
        size: int,
        steps: int,
        batch_size: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        start_step: Callable[[], int] | None = None,
    ) -> None:
        self.size, self.steps, self.seed, self.rank, self.world = size, steps, seed, rank, world
        self.batch_size = size if batch_size is None else min(batch_size, size)
        self.start_step = start_step
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.steps

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
        return (self.batch(s)[self.rank :: self.world] for s in range(first, first + self.steps))


class TaskDataModule(pl.LightningDataModule):
    """Base class of every task. Subclasses implement ``generate``, ``loss`` and ``metrics``."""

    name: str = "task"
    objective: str = "loss"  # the metric a sweep optimises
    objective_direction: str = "minimize"

    def __init__(
        self,
        seed: int = 0,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        data_file: str | None = None,
    ):
        super().__init__()
        self.seed, self.batch_size, self.steps_per_epoch = seed, batch_size, steps_per_epoch
        self.data_file = data_file
        self.train_set: TensorBatches | None = None
        self.eval_set: TensorBatches | None = None

    @classmethod
    def check_config(cls, node: Any) -> None:
        """Raise ``rnncap.core.config.ConfigError`` (one line naming the key) on bad task values
        that the generic numeric rules in ``rnncap.core.config`` do not cover."""

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
            self.train_set, self.eval_set = self.generate(torch.Generator().manual_seed(self.seed))

    def data_key(self) -> dict[str, Any]:
        """The task name and the constructor arguments that determine its data (seed included)."""
        names = inspect.signature(type(self).__init__).parameters
        args = {n: getattr(self, n) for n in names if n not in _NOT_DATA and hasattr(self, n)}
        return {"task": self.name, **args}

    def save_data(self, path: str | Path) -> None:
        """Generate the sets from ``seed`` and save them, keyed by ``data_key``, to ``path``."""
        train, evaluate = self.generate(torch.Generator().manual_seed(self.seed))
        data = {"key": self.data_key(), "train": train.tensors, "eval": evaluate.tensors}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)

    def load_data(self, path: str | Path) -> tuple[TensorBatches, TensorBatches]:
        """The sets saved by ``save_data``; a file generated with other settings is refused."""
        if not Path(path).is_file():
            raise ConfigError(f"task.data_file={path} does not exist (see rnncap.generate)")
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
        return size if self.batch_size is None else min(self.batch_size, size)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        batches = StepBatches(
            len(self.train_set),
            self.steps_per_epoch,
            self.batch_size,
            seed=self.seed,
            rank=rank,
            world=world,
            start_step=self._global_step,
        )
        return DataLoader(self.train_set, batch_sampler=batches, collate_fn=_identity)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader()

    def eval_dataloader(self, dataset: Dataset | None = None) -> DataLoader:
        """Batches over ``dataset`` (default: the evaluation set) in order, once."""
        dataset = self.eval_set if dataset is None else dataset
        size = len(dataset)
        batches = BatchSampler(range(size), self.batch_size or size, drop_last=False)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=_identity)

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
