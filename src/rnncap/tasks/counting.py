"""Counting generalisation: Dyck-1 depth, trained short, tested long.

The strings are Dyck-1 words over ( and ), one-hot: symbol 0 opens, 1 closes. A string of
length L is a random walk of the depth d (d_0 = 0) drawn step by step from a coin c_t (one
fair coin per step, drawn for every step up front so that the data is a fixed function of the
seed): open when d = 0, close when d >= L - t (the steps left; the word must end balanced),
otherwise open on c_t = 0 and close on c_t = 1. For even L this is a balanced Dyck-1 word, for
odd L a prefix of one ending at depth 1. At every step the network outputs, as
``max_count + 1`` logits, the capped depth min(d_t, max_count), the target of the
parentheses task with one stream (the depth itself is not capped).

Why Dyck-1 and not a^n b^n: in a^n b^n every string is one count up and one count down, so the
per-step target is mostly predictable from the phase; a Dyck-1 walk rises and falls at random,
so the network must track the exact depth throughout, and longer strings reach depths never
seen in training (about sqrt(L)). Why the capped depth: the output classes stay the same at
every length, so a test string asks only for counting beyond the training depths, not for
classes never trained; and to output the right class when the depth falls back below the cap
the network must have counted how far above the cap it went.

Training strings have exactly ``train_length`` steps; since every step is scored, every
prefix length <= ``train_length`` is trained. Evaluation: ``accuracy`` and ``loss``
(cross-entropy per step, nats) on held-out strings of the training length, and per-step
accuracy on ``test_samples`` fresh strings of each length in ``test_lengths``:
``long_accuracy_<L>`` per length, ``long_accuracy`` = the one at the longest. Per-step
accuracy counts the easy steps too (a depth far above the cap): compare cells by it, not
with 1.

``saturation`` is the share of the network's tanh and sigmoid outputs within 1e-3 of their
limits (|y| >= 1 - 1e-3 for tanh; y <= 1e-3 or y >= 1 - 1e-3 for sigmoid) over every unit,
step, layer and gate, on the longest test strings. It is recorded with a ``TorchFunctionMode``
that sees every ``torch.tanh`` and ``torch.sigmoid`` the cells compute, gates included, while
the layers run their step loops (``use_native`` off: the fused RNN and LSTM kernels hide their
activations). ReLU outputs have no upper limit and are not counted: a cell with none of these
activations (IRNN, the ReLU IndRNN) reports null. A compiled step (``cell.compile``) may hide
them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches
from rnncap.tasks.parentheses import capped_depths

LIMIT_TOLERANCE = 1e-3  # an activation this close to its limit counts as saturated
TANH = (torch.tanh, Tensor.tanh)
SIGMOID = (torch.sigmoid, Tensor.sigmoid)


def dyck_walks(count: int, length: int, generator: torch.Generator) -> Tensor:
    """Symbols [B, T] (0 = open, 1 = close) of ``count`` random Dyck-1 walks (module doc)."""
    coins = torch.randint(0, 2, (count, length), generator=generator)
    symbols, depth = torch.empty_like(coins), torch.zeros(count, dtype=torch.long)
    for t in range(length):
        close = torch.where(depth >= length - t, 1, coins[:, t])
        symbols[:, t] = torch.where(depth == 0, 0, close)
        depth += 1 - 2 * symbols[:, t]
    return symbols


class SaturationCounter(TorchFunctionMode):
    """Counts the tanh and sigmoid outputs computed while active, and those near a limit."""

    def __init__(self) -> None:
        super().__init__()
        self.saturated, self.total = 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in TANH:
            near = out.abs() >= 1 - LIMIT_TOLERANCE
        elif func in SIGMOID:
            near = torch.minimum(out, 1 - out) <= LIMIT_TOLERANCE
        else:
            return out
        self.saturated += int(near.sum())
        self.total += near.numel()
        return out


@contextmanager
def step_loops(model: nn.Module) -> Iterator[None]:
    """Run every cell's step loop (not a fused kernel), so its activations are visible. A cell is
    a module with a ``use_native`` switch (``RecurrentCell``'s: no task imports a cell module)."""
    cells = [m for m in model.modules() if hasattr(m, "use_native")]
    before = [cell.use_native for cell in cells]
    for cell in cells:
        cell.use_native = False
    try:
        yield
    finally:
        for cell, native in zip(cells, before, strict=True):
            cell.use_native = native


@dataclass
class CountingConfig(TaskConfig):
    """``task=counting``: Dyck-1 depth per step, trained short, evaluated on longer strings."""

    _target_: str = "rnncap.tasks.counting.CountingTask"
    name: str = "counting"
    train_length: int = bounded(20, ge=2)  # steps of every training string (all prefixes scored)
    # lengths of the generalisation test strings, each >= train_length (here 2x and 10x);
    # long_accuracy is the one at the longest
    test_lengths: list[int] = field(default_factory=lambda: [40, 200])
    max_count: int = bounded(5, ge=1)  # output class = min(depth, max_count), as parentheses
    samples: int = bounded(2000, ge=1)  # training strings (fixed set)
    eval_samples: int = bounded(200, ge=1)  # held-out strings of train_length: accuracy, loss
    test_samples: int = bounded(100, ge=1)  # strings per test length
    batch_size: int | None = bounded(64, ge=1)  # strings per training step; null = full


class CountingTask(TaskDataModule):
    """Dyck-1 capped depth per step; metrics: accuracy, loss, long_accuracy, saturation."""

    name = "counting"
    objective = "loss"
    objective_direction = "minimize"
    config: CountingConfig

    def __init__(self, config: CountingConfig) -> None:
        super().__init__(config)
        self.test_sets: dict[int, TensorBatches] = {}

    @classmethod
    def check_config(cls, node: Any) -> None:
        lengths = list(node.test_lengths)
        if not lengths or min(lengths) < node.train_length:
            raise ConfigError(
                f"task.test_lengths={lengths} must be a non-empty list of lengths >= "
                f"task.train_length={node.train_length}"
            )

    @property
    def input_size(self) -> int:
        return 2

    @property
    def output_size(self) -> int:
        return self.config.max_count + 1

    def strings(self, count: int, length: int, generator: torch.Generator) -> TensorBatches:
        """(one-hot inputs [B, T, 2], capped depths [B, T])."""
        symbols = dyck_walks(count, length, generator)
        targets = capped_depths(symbols, 1, self.config.max_count)[..., 0]
        return TensorBatches(F.one_hot(symbols, 2).float(), targets)

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        train = self.strings(self.config.samples, self.config.train_length, generator)
        evaluation = self.strings(self.config.eval_samples, self.config.train_length, generator)
        # the generalisation sets: drawn from the same generator, after the two above
        self.test_sets = {
            n: self.strings(self.config.test_samples, n, generator)
            for n in self.config.test_lengths
        }
        return train, evaluation

    def settings(self) -> dict[str, Any]:
        return {
            "train_length": self.config.train_length,
            "test_lengths": list(self.config.test_lengths),
            "max_count": self.config.max_count,
            "samples": self.config.samples,
        }

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.transpose(1, 2), batch[1])

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        nats = F.cross_entropy(outputs.transpose(1, 2), batch[1], reduction="none")  # [B, T]
        correct = (outputs.argmax(-1) == batch[1]).float()
        return {
            "accuracy": correct.mean(1).sum(),
            "loss": nats.mean(1).sum(),
            "count": torch.tensor(float(len(correct))),
        }

    def evaluate(self, model: nn.Module, params: int) -> dict[str, Any]:
        results = super().evaluate(model, params)
        for n, strings in self.test_sets.items():
            totals = self.totals(model, self.eval_dataloader(strings))
            results[f"long_accuracy_{n}"] = totals["accuracy"] / totals["count"]
        longest = max(self.config.test_lengths)
        results["long_accuracy"] = results[f"long_accuracy_{longest}"]
        results["saturation"] = self.saturation(model, self.test_sets[longest])
        return results

    @torch.no_grad()
    def saturation(self, model: nn.Module, strings: TensorBatches) -> float | None:
        """Share of tanh/sigmoid outputs within 1e-3 of a limit (module doc); None if none."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        counter = SaturationCounter()
        try:
            with step_loops(model), counter:
                for inputs, _ in self.eval_dataloader(strings):
                    model(inputs.to(device))
        finally:
            model.train(was_training)
        return counter.saturated / counter.total if counter.total else None
