"""What a population trains on, and how each member is scored (``rnncap.core.population``).

Two kinds, one interface (``loader``, ``losses``, ``objectives``):

* ``MemberSets`` (the capacity task): each member its own training set, b_k samples drawn
  from its own seed, padded to max b_k with a mask; full batch, or (``task.batch_size``)
  minibatches drawn from each member's own b_k samples in its solo run's order (``StepBatches``
  seeded by its own ``task.seed``); the objective (bits stored) is computed on the whole
  training set, as the capacity task scores a solo run.
* ``SharedSet`` (every other task): one data set and one batch order for every member,
  those of the population's ``task.seed``; member k's loss on a batch is the task's own loss
  of its readouts, its objective the task's on the evaluation set. Member k is therefore the
  solo run ``seed=s_k task.seed=<the population's task seed>``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnncap.core.metrics import stored_bits
from rnncap.tasks.base import (
    Batch,
    RepeatedFullBatch,
    StepBatches,
    TaskDataModule,
    TensorBatches,
    whole_batch,
)

# population(x [K', B, T, I], which) -> readouts [K', B, T, O]
Population = Callable[[Tensor, list[int]], Tensor]


class PopulationData(Protocol):
    """The training data of a population and each member's loss and objective."""

    task: TaskDataModule  # whose objective (name and direction) the members are scored by

    def loader(self, start_step: Callable[[], int]) -> DataLoader: ...

    def losses(self, population: Population, batch: Batch, which: list[int]) -> Tensor: ...

    def objectives(
        self, population: Population, batch: Batch | None, which: list[int]
    ) -> list[float]: ...

    def step_samples(self, member: int) -> int: ...


# ---------------------------------------------------------------------- capacity: own sets
def stack_member_data(tasks: list[TaskDataModule]) -> TensorBatches:
    """(inputs [K, S, T, I], labels [K, S], mask [K, S]) with S = max b_k, zero-padded."""
    sets = [task.train_set.tensors for task in tasks]
    size = max(len(inputs) for inputs, _ in sets)
    inputs = torch.zeros(len(sets), size, *sets[0][0].shape[1:])
    labels, mask = torch.zeros(len(sets), size), torch.zeros(len(sets), size)
    for k, (x, y) in enumerate(sets):
        inputs[k, : len(x)], labels[k, : len(y)], mask[k, : len(y)] = x, y, 1.0
    return TensorBatches(inputs, labels, mask)


def member_losses(outputs: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Each member's capacity-task loss, the mean BCE over its own samples: [K]."""
    bce = F.binary_cross_entropy_with_logits(outputs[..., -1, 0], labels, reduction="none")
    return (bce * mask).sum(1) / mask.sum(1)


def member_correct(outputs: Tensor, labels: Tensor, mask: Tensor) -> list[float]:
    """Each member's count of correctly classified samples of its own, as the task counts."""
    right = ((outputs[..., -1, 0] > 0).float() == labels).float()
    return (right * mask).sum(1).tolist()


class StepNumbers:
    """A batch sampler yielding ``[global step]`` endlessly from ``start_step()`` on: the
    dataset (``MemberMinibatches``) turns a step into every member's batch of that step."""

    def __init__(self, start_step: Callable[[], int]) -> None:
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[int]]:
        return ([step] for step in itertools.count(self.start_step()))


class MemberMinibatches(Dataset):
    """Step s -> (inputs [K, B, T, I], labels [K, B], mask [K, B]): member k's batch of its
    solo run's step s (``StepBatches`` over its own b_k samples in minibatches of its own
    B_k, seeded by its own ``task.seed``; all b_k when B_k is None), padded to B = max B_k
    with a zero mask."""

    def __init__(
        self,
        data: TensorBatches,
        samples: list[int],
        seeds: list[int],
        batches: list[int | None],
    ) -> None:
        self.data = data
        self.samplers = [
            StepBatches(size, batch, seed=seed)
            for size, seed, batch in zip(samples, seeds, batches, strict=True)
        ]
        self.batch = max(sampler.batch_size for sampler in self.samplers)

    def __len__(self) -> int:  # endless: the trainer's max_steps ends training
        return 2**62

    def __getitems__(self, steps: list[int]) -> Batch:
        (step,) = steps
        rows = [sampler.batch(step) for sampler in self.samplers]
        index = torch.zeros(len(rows), self.batch, dtype=torch.long)
        mask = torch.zeros(len(rows), self.batch)
        for k, row in enumerate(rows):
            index[k, : len(row)], mask[k, : len(row)] = torch.as_tensor(row), 1.0
        members = torch.arange(len(rows)).unsqueeze(1)
        inputs, labels, _ = self.data.tensors
        return inputs[members, index], labels[members, index], mask


class MemberSets:
    """The capacity task: member k trains on its own b_k samples, full batch or in minibatches
    of its own ``task.batch_size`` from them."""

    def __init__(self, tasks: list[TaskDataModule]) -> None:
        self.task = tasks[0]
        self.data = stack_member_data(tasks)
        self.samples = [len(task.train_set) for task in tasks]
        self.seeds = [task.seed for task in tasks]
        self.batch_sizes = [task.batch_size for task in tasks]  # None: full batch

    def step_samples(self, member: int) -> int:
        """Samples a member trains on per step (its b_k, or its minibatch): its compute."""
        size, batch = self.samples[member], self.batch_sizes[member]
        return size if batch is None else min(batch, size)

    def loader(self, start_step: Callable[[], int]) -> DataLoader:
        if all(batch is None for batch in self.batch_sizes):
            batches = RepeatedFullBatch(len(self.data))  # every step the same: no position
            return DataLoader(self.data, batch_sampler=batches, collate_fn=whole_batch)
        steps = MemberMinibatches(self.data, self.samples, self.seeds, self.batch_sizes)
        return DataLoader(steps, batch_sampler=StepNumbers(start_step), collate_fn=whole_batch)

    def losses(self, population: Population, batch: Batch, which: list[int]) -> Tensor:
        x, labels, mask = batch
        return member_losses(population(x[which], which), labels[which], mask[which])

    @torch.no_grad()
    def objectives(
        self, population: Population, batch: Batch | None, which: list[int]
    ) -> list[float]:
        """Bits stored by each member of ``which`` on its whole training set (``batch`` is not
        used: with minibatches it is a part of it)."""
        x, labels, mask = self.data.tensors
        counted = member_correct(population(x[which], which), labels[which], mask[which])
        return [
            stored_bits(self.samples[k], c / self.samples[k])
            for k, c in zip(which, counted, strict=True)
        ]


# ---------------------------------------------------------------------- other tasks: one set
class SharedSet:
    """Any task but capacity: every member sees the batches its solo run sees (one data set,
    ``StepBatches`` seeded by the task's seed) and is scored by the task's own loss and
    metrics."""

    def __init__(self, task: TaskDataModule, params: int) -> None:
        self.task, self.params = task, params

    def step_samples(self, member: int) -> int:
        """Samples per step, the same for every member (the population's batch)."""
        return self.task.step_batch_size

    def loader(self, start_step: Callable[[], int]) -> DataLoader:
        task = self.task
        batches = StepBatches(
            len(task.train_set), task.batch_size, seed=task.seed, start_step=start_step
        )
        return DataLoader(task.train_set, batch_sampler=batches, collate_fn=whole_batch)

    @staticmethod
    def readouts(population: Population, x: Tensor, which: list[int]) -> Tensor:
        return population(x.expand(len(which), *x.shape), which)

    def losses(self, population: Population, batch: Batch, which: list[int]) -> Tensor:
        outputs = self.readouts(population, batch[0], which)
        return torch.stack([self.task.loss(out, batch) for out in outputs])

    @torch.no_grad()
    def objectives(
        self, population: Population, batch: Batch | None, which: list[int]
    ) -> list[float]:
        """The task objective of each member of ``which`` on the evaluation set, summed over
        its batches as ``TaskDataModule.evaluate`` sums them (``batch`` is not used)."""
        totals: list[dict[str, float]] = [{} for _ in which]
        for eval_batch in self.task.eval_dataloader():
            outputs = self.readouts(population, eval_batch[0], which)
            for total, out in zip(totals, outputs, strict=True):
                for key, value in self.task.metrics(out, eval_batch).items():
                    total[key] = total.get(key, 0.0) + float(value)
        objective = self.task.objective
        return [float(self.task.summarise(total, self.params)[objective]) for total in totals]
