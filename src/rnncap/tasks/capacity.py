"""Per-parameter capacity task (Collins et al. 2017, section 3.1).

b distinct random binary vectors x in {0,1}^n_in are shown at the first time step (zeros at
the other T-1 steps); each has a random binary label, read out after T steps through one
logit. Training set = evaluation set: the task measures memorisation. With p the fraction
classified correctly, the model stores ``bits = b * (1 - H2(p))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded
from rnncap.base.metrics import stored_bits
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches


def distinct_binary_rows(samples: int, width: int, generator: torch.Generator) -> Tensor:
    """``samples`` distinct rows of uniform random bits, in draw order. Needs samples <= 2^width."""
    if width < 63 and samples > 2**width:
        raise ValueError(f"task.samples={samples} exceeds the 2^{width} distinct inputs")
    rows = torch.empty(0, width, dtype=torch.int64)
    while len(rows) < samples:
        draw = torch.randint(0, 2, (2 * (samples - len(rows)) + 8, width), generator=generator)
        rows = torch.cat([rows, draw])
        if width < 63:  # collisions are possible: keep first occurrences, in order
            codes = (rows << torch.arange(width)).sum(1).numpy()
            _, first = np.unique(codes, return_index=True)
            rows = rows[torch.as_tensor(np.sort(first))]
    return rows[:samples]


def check_distinct_inputs(node: Any) -> None:
    """``task.samples`` distinct binary inputs need samples <= 2^input_dim."""
    if node.input_dim < 63 and node.samples > 2**node.input_dim:
        raise ConfigError(
            f"task.samples={node.samples} exceeds the 2^{node.input_dim} distinct inputs of "
            f"task.input_dim={node.input_dim}: raise task.input_dim or lower task.samples"
        )


@dataclass
class CapacityConfig(TaskConfig):
    """``task=capacity``: b random binary inputs -> random binary labels."""

    _target_: str = "rnncap.tasks.capacity.CapacityTask"
    name: str = "capacity"
    samples: int = bounded(1000, ge=1)  # b, the number of (input, label) pairs to memorise
    input_dim: int = bounded(16, ge=1)  # n_in; inputs are distinct, so samples <= 2^input_dim
    steps: int = bounded(5, ge=1)  # T: input at step 1, zeros after, label read out at step T
    data_file: str | None = None  # a file from `rnncap generate data` to load instead


class CapacityTask(TaskDataModule):
    """Random binary inputs -> random binary labels; metric: bits stored."""

    name = "capacity"
    objective = "bits"
    objective_direction = "maximize"
    config: CapacityConfig

    @classmethod
    def check_config(cls, node: Any) -> None:
        check_distinct_inputs(node)
        if node.get("batch_size") is not None and node.batch_size > node.samples:
            raise ConfigError(
                f"task.batch_size={node.batch_size} exceeds task.samples={node.samples}: a "
                "minibatch is drawn from the b samples; lower it or set task.batch_size=null"
            )

    @property
    def input_size(self) -> int:
        return self.config.input_dim

    @property
    def output_size(self) -> int:
        return 1

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        bits = distinct_binary_rows(self.config.samples, self.config.input_dim, generator)
        labels = torch.randint(0, 2, (self.config.samples,), generator=generator).float()
        inputs = torch.zeros(self.config.samples, self.config.steps, self.config.input_dim)
        inputs[:, 0] = bits.float()
        data = TensorBatches(inputs, labels)
        return data, data

    def settings(self) -> dict[str, Any]:
        return {"samples": self.config.samples, "steps": self.config.steps}

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs[:, -1, 0], batch[1])

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        logits, labels = outputs[:, -1, 0], batch[1]
        correct = ((logits > 0).float() == labels).sum()
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        return {"accuracy": correct, "loss": loss, "count": torch.tensor(float(len(labels)))}

    def summarise(self, totals: dict[str, float], params: int) -> dict[str, Any]:
        means = super().summarise(totals, params)
        bits = stored_bits(self.config.samples, means["accuracy"])
        return {
            "accuracy": means["accuracy"],
            "loss": means["loss"],
            "bits": bits,
            "bits_per_param": bits / params,
        }
