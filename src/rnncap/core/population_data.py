"""What a population trains on, and how each member is scored (``rnncap.core.population``).

Two kinds, one interface (``loader``, ``losses``, ``objectives``):

* ``MemberSets`` (the capacity task): each member its own training set, b_k samples drawn
  from its own seed, padded to max b_k with a mask, full batch; the objective (bits stored) is
  computed on that training set, as the capacity task scores a solo run.
* ``SharedSet`` (every other task): one data set and one batch order for every member,
  those of the population's ``task.seed``; member k's loss on a batch is the task's own loss
  of its readouts, its objective the task's on the evaluation set. Member k is therefore the
  solo run ``seed=s_k task.seed=<the population's task seed>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from rnncap.base.metrics import stored_bits
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

    def objectives(self, population: Population, batch: Batch, which: list[int]) -> list[float]: ...


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


class MemberSets:
    """The capacity task: member k trains on its own b_k samples, full batch."""

    def __init__(self, tasks: list[TaskDataModule]) -> None:
        self.task = tasks[0]
        self.data = stack_member_data(tasks)
        self.samples = [len(task.train_set) for task in tasks]

    def loader(self, start_step: Callable[[], int]) -> DataLoader:
        batches = RepeatedFullBatch(len(self.data))  # every step the same: no position to keep
        return DataLoader(self.data, batch_sampler=batches, collate_fn=whole_batch)

    def losses(self, population: Population, batch: Batch, which: list[int]) -> Tensor:
        x, labels, mask = batch
        return member_losses(population(x[which], which), labels[which], mask[which])

    def objectives(self, population: Population, batch: Batch, which: list[int]) -> list[float]:
        """Bits stored by each member of ``which`` (its training set is the batch)."""
        x, labels, mask = batch
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
    def objectives(self, population: Population, batch: Batch, which: list[int]) -> list[float]:
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
