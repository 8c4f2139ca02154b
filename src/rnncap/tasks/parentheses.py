"""Parentheses counting (Collins et al. 2017, section 3.3).

The vocabulary has ``streams`` pairs of parentheses and ``noise_symbols`` noise symbols:
symbol s < S opens stream s, S <= s < 2S closes stream s - S, the rest are noise. Each of the
``steps`` inputs is one symbol drawn uniformly from the whole vocabulary, shown one-hot. Every
stream keeps its nesting depth (a close on depth 0 is ignored):

    d_{t, s} = max(0, d_{t-1, s} + [x_t opens s] - [x_t closes s]),   d_{0, s} = 0,

and at every step the network outputs, for every stream, the class min(d_{t, s}, max_count)
(``max_count + 1`` classes per stream; the depth itself is not capped). Metrics: ``accuracy``
over steps and streams, ``loss`` = cross-entropy per step and stream (nats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnncap.base.fields import bounded
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches


def capped_depths(symbols: Tensor, streams: int, max_count: int) -> Tensor:
    """Targets [B, T, S]: each stream's capped nesting depth after each symbol [B, T]."""
    stream = torch.arange(streams)
    delta = (symbols[..., None] == stream).long() - (symbols[..., None] == stream + streams).long()
    depth = torch.zeros_like(delta[:, 0])
    targets = torch.empty_like(delta)
    for t in range(symbols.shape[1]):
        depth = (depth + delta[:, t]).clamp_min(0)
        targets[:, t] = depth.clamp_max(max_count)
    return targets


@dataclass
class ParenthesesConfig(TaskConfig):
    """``task=parentheses``: interleaved streams, output each stream's capped depth."""

    _target_: str = "rnncap.tasks.parentheses.ParenthesesTask"
    name: str = "parentheses"
    # S independent streams, each with its own ( and ) symbol (open: the paper says "several")
    streams: int = bounded(10, ge=1)
    # symbols of no stream; each step draws uniformly from 2S + noise symbols
    noise_symbols: int = bounded(10, ge=0)
    # output class per stream = min(depth, max_count); the depth itself is not capped
    max_count: int = bounded(5, ge=1)
    steps: int = bounded(50, ge=1)  # sequence length; the output is read at every step
    samples: int = bounded(2000, ge=1)  # training sequences (fixed set)
    eval_samples: int = bounded(500, ge=1)  # held-out sequences: accuracy and loss
    batch_size: int | None = bounded(64, ge=1)  # sequences per training step; null = full


class ParenthesesTask(TaskDataModule):
    """Count open parentheses of several interleaved streams; metrics: accuracy, loss."""

    name = "parentheses"
    objective = "loss"
    objective_direction = "minimize"
    config: ParenthesesConfig

    @property
    def vocabulary(self) -> int:
        return 2 * self.config.streams + self.config.noise_symbols

    @property
    def classes(self) -> int:
        return self.config.max_count + 1

    @property
    def input_size(self) -> int:
        return self.vocabulary

    @property
    def output_size(self) -> int:
        return self.config.streams * self.classes

    def sequences(self, count: int, generator: torch.Generator) -> TensorBatches:
        """(one-hot inputs [B, T, V], targets [B, T, S])."""
        symbols = torch.randint(0, self.vocabulary, (count, self.config.steps), generator=generator)
        targets = capped_depths(symbols, self.config.streams, self.config.max_count)
        return TensorBatches(F.one_hot(symbols, self.vocabulary).float(), targets)

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        return self.sequences(self.config.samples, generator), self.sequences(
            self.config.eval_samples, generator
        )

    def settings(self) -> dict[str, Any]:
        return {
            "streams": self.config.streams,
            "noise_symbols": self.config.noise_symbols,
            "max_count": self.config.max_count,
            "steps": self.config.steps,
            "samples": self.config.samples,
        }

    def _logits(self, outputs: Tensor) -> Tensor:
        """Readouts [B, T, S*C] -> logits [B, C, T, S] (the class axis second, for CE)."""
        b, t, _ = outputs.shape
        return outputs.reshape(b, t, self.config.streams, self.classes).permute(0, 3, 1, 2)

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(self._logits(outputs), batch[1])

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        logits, targets = self._logits(outputs), batch[1]
        nats = F.cross_entropy(logits, targets, reduction="none")  # [B, T, S]
        correct = (logits.argmax(1) == targets).float()
        return {
            "accuracy": correct.mean((1, 2)).sum(),
            "loss": nats.mean((1, 2)).sum(),
            "count": torch.tensor(float(len(targets))),
        }
