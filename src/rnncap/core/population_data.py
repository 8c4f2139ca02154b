"""What a population trains on, and how each member is scored (``rnncap.core.population``).

Two kinds, one interface (``loader``, ``losses``, ``objectives``):

* ``MemberSets`` (the capacity task): each member its own training set, b_k samples drawn
  from its own seed; full batch, or (``task.batch_size``) minibatches drawn from each
  member's own b_k samples in its solo run's order (``StepBatches`` seeded by its own
  ``task.seed``), the training members' batches padded to the longest with a mask; the
  objective (bits stored) is computed on the whole training set, as the capacity task scores
  a solo run.
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

from rnncap.base.metrics import stored_bits
from rnncap.tasks.base import (
    Batch,
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
    """A batch sampler yielding ``[global step]`` endlessly from ``start_step()`` on."""

    def __init__(self, start_step: Callable[[], int]) -> None:
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[int]]:
        return ([step] for step in itertools.count(self.start_step()))


class Steps(Dataset):
    """Step numbers as batches: ``[s]`` -> ``([s],)``, a plain list that stays on the host
    (``MemberSets`` gathers each training member's samples of step s where the model is)."""

    def __len__(self) -> int:  # endless: the trainer's max_steps ends training
        return 2**62

    def __getitems__(self, steps: list[int]) -> tuple[list[int]]:
        return (list(steps),)


def padded_rows(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Index rows of different lengths -> (index [K', B], mask [K', B]), B the longest."""
    width = max(len(row) for row in rows)
    index = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    for j, row in enumerate(rows):
        index[j, : len(row)], mask[j, : len(row)] = torch.as_tensor(row), 1.0
    return index, mask


class MemberSets:
    """The capacity task: member k trains on its own b_k samples, full batch or in minibatches
    of its own ``task.batch_size`` from them (``StepBatches`` over its b_k samples, seeded by
    its own ``task.seed``: the solo run's batch of each step). Each step gathers the batches of
    the members that train only, padded to the longest of them with a zero mask, from the
    members' sets held where the model is: members that left (pruned, diverged, done) cost
    nothing, and the batch shrinks with them."""

    def __init__(self, tasks: list[TaskDataModule]) -> None:
        self.task = tasks[0]
        self.data = stack_member_data(tasks)
        self.samples = [len(task.train_set) for task in tasks]
        self.seeds = [task.seed for task in tasks]
        self.batch_sizes = [task.batch_size for task in tasks]  # None: full batch
        self.samplers = [
            StepBatches(size, batch, seed=seed)
            for size, seed, batch in zip(self.samples, self.seeds, self.batch_sizes, strict=True)
        ]
        self._placed: tuple[Tensor, ...] | None = None

    def step_samples(self, member: int) -> int:
        """Samples a member trains on per step (its b_k, or its minibatch): its compute."""
        return self.samplers[member].batch_size

    def tensors(self, device: torch.device) -> tuple[Tensor, ...]:
        """(inputs [K, S, T, I], labels [K, S], mask [K, S]) on ``device``, moved once."""
        if self._placed is None or self._placed[0].device != device:
            self._placed = tuple(t.to(device) for t in self.data.tensors)
        return self._placed

    def loader(self, start_step: Callable[[], int]) -> DataLoader:
        return DataLoader(Steps(), batch_sampler=StepNumbers(start_step), collate_fn=whole_batch)

    def step_batch(self, step: int, which: list[int], device: torch.device) -> Batch:
        """Members ``which``'s batches of ``step``: inputs [K', B, T, I], labels and mask."""
        if all(self.batch_sizes[k] is None for k in which):  # full batch: no gather
            placed = self.tensors(device)
            return (
                placed
                if which == list(range(len(self.samples)))
                else (tuple(t[which] for t in placed))
            )
        inputs, labels, _ = self.tensors(device)
        index, mask = padded_rows([self.samplers[k].batch(step) for k in which])
        members = torch.as_tensor(which).unsqueeze(1).to(device)
        index = index.to(device)
        return inputs[members, index], labels[members, index], mask.to(device)

    def losses(self, population: Population, batch: Batch, which: list[int]) -> Tensor:
        ((step,),) = batch
        x, labels, mask = self.step_batch(step, which, device_of(population))
        return member_losses(population(x, which), labels, mask)

    @torch.no_grad()
    def objectives(
        self, population: Population, batch: Batch | None, which: list[int]
    ) -> list[float]:
        """Bits stored by each member of ``which`` on its whole training set."""
        x, labels, mask = (t[which] for t in self.tensors(device_of(population)))
        counted = member_correct(population(x, which), labels, mask)
        return [
            stored_bits(self.samples[k], c / self.samples[k])
            for k, c in zip(which, counted, strict=True)
        ]


def device_of(population: Population) -> torch.device:
    """Where the population's parameters are."""
    return next(population.parameters()).device  # type: ignore[attr-defined]


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
        device = device_of(population)
        for eval_batch in self.task.eval_dataloader():
            eval_batch = tuple(t.to(device) for t in eval_batch)
            outputs = self.readouts(population, eval_batch[0], which)
            for total, out in zip(totals, outputs, strict=True):
                for key, value in self.task.metrics(out, eval_batch).items():
                    total[key] = total.get(key, 0.0) + float(value)
        objective = self.task.objective
        return [float(self.task.summarise(total, self.params)[objective]) for total in totals]
