"""Memorisation distance: recall the symbol shown ``delay`` steps ago.

Each of the ``length`` steps shows one symbol x_t drawn i.i.d. uniformly from an alphabet of
K = ``symbols``, one-hot. From step ``delay`` on (steps counted from 0) the network outputs, as
K logits, the symbol shown ``delay`` steps earlier:

    y_t = x_{t - delay},   t = delay .. length - 1      (steps 0 .. delay - 1 are not scored)

so the network must hold a sliding window of the last ``delay`` symbols, delay log2 K bits.
Metrics, over the scored steps only: ``accuracy``, ``loss`` = cross-entropy per scored step
(nats), and ``recalled_bits``, the information recalled per scored step in bits,

    recalled_bits = log2 K - H2(e) - e log2(K - 1),   e = 1 - accuracy   (0 when e >= 1 - 1/K)

Why this estimator: by Fano's inequality H(x | x_hat) <= H2(e) + e log2(K - 1), and x is
uniform, so the mutual information I(x; x_hat) between the symbol and the network's answer is
at least this value; it is exact for a K-ary symmetric channel (errors spread evenly over the
wrong symbols). For K = 2 it is the capacity task's 1 - H2(p). It reads only the accuracy, so
it stays comparable across cells whatever their calibration; a cross-entropy estimate
(log2 K - loss / ln 2) would instead credit or penalise confidence. At or below chance
accuracy it is 0: no information is claimed from a noisy below-chance score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded
from rnncap.base.metrics import binary_entropy
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches

UNSCORED = -100  # target of the first ``delay`` steps: cross_entropy's default ignore_index


def recalled_bits(symbols: int, accuracy: float) -> float:
    """Fano's lower bound on I(x; x_hat) in bits for uniform x over ``symbols`` (module doc)."""
    error = 1.0 - accuracy
    if error >= 1.0 - 1.0 / symbols:
        return 0.0
    return math.log2(symbols) - binary_entropy(error) - error * math.log2(symbols - 1)


def delayed_targets(stream: Tensor, delay: int) -> Tensor:
    """Targets [B, T]: the symbol ``delay`` steps back, ``UNSCORED`` before step ``delay``."""
    targets = torch.full_like(stream, UNSCORED)
    targets[:, delay:] = stream[:, :-delay]
    return targets


@dataclass
class DistanceConfig(TaskConfig):
    """``task=distance``: a stream of i.i.d. symbols, output the one ``delay`` steps back."""

    _target_: str = "rnncap.tasks.distance.DistanceTask"
    name: str = "distance"
    symbols: int = bounded(4, ge=2)  # K, the alphabet; one-hot inputs, K output logits
    length: int = bounded(30, ge=2)  # steps per sequence; scored steps = length - delay
    delay: int = bounded(5, ge=1)  # target at step t is the symbol of step t - delay; < length
    samples: int = bounded(2000, ge=1)  # training sequences (fixed set)
    eval_samples: int = bounded(500, ge=1)  # held-out sequences: accuracy, loss, recalled_bits
    batch_size: int | None = bounded(64, ge=1)  # sequences per training step; null = full


class DistanceTask(TaskDataModule):
    """Recall the symbol ``delay`` steps back; metrics: accuracy, loss, recalled_bits."""

    name = "distance"
    objective = "loss"
    objective_direction = "minimize"
    config: DistanceConfig

    @classmethod
    def check_config(cls, node: Any) -> None:
        if node.delay >= node.length:
            raise ConfigError(
                f"task.delay={node.delay} must be < task.length={node.length}: "
                "no step would be scored"
            )

    @property
    def input_size(self) -> int:
        return self.config.symbols

    @property
    def output_size(self) -> int:
        return self.config.symbols

    def sequences(self, count: int, generator: torch.Generator) -> TensorBatches:
        """(one-hot inputs [B, T, K], targets [B, T])."""
        stream = torch.randint(
            0, self.config.symbols, (count, self.config.length), generator=generator
        )
        targets = delayed_targets(stream, self.config.delay)
        return TensorBatches(F.one_hot(stream, self.config.symbols).float(), targets)

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        return self.sequences(self.config.samples, generator), self.sequences(
            self.config.eval_samples, generator
        )

    def settings(self) -> dict[str, Any]:
        return {
            "symbols": self.config.symbols,
            "length": self.config.length,
            "delay": self.config.delay,
            "samples": self.config.samples,
        }

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.transpose(1, 2), batch[1], ignore_index=UNSCORED)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        logits, targets = (
            outputs[:, self.config.delay :],
            batch[1][:, self.config.delay :],
        )  # scored steps
        nats = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, T-d]
        correct = (logits.argmax(-1) == targets).float()
        return {
            "accuracy": correct.mean(1).sum(),
            "loss": nats.mean(1).sum(),
            "count": torch.tensor(float(len(targets))),
        }

    def summarise(self, totals: dict[str, float], params: int) -> dict[str, Any]:
        means = super().summarise(totals, params)
        return {**means, "recalled_bits": recalled_bits(self.config.symbols, means["accuracy"])}
