"""Random continuous functions (RCF, Collins et al. 2017, section 3.3).

The capacity task with real-valued targets: a fixed set of b distinct random binary inputs
x in {0,1}^n_in is shown at step 1 (zeros after), and after T steps a linear readout must
output y = f(x) in R^m for a fixed random function f, drawn once per seed:

    table:   f(x) ~ N(0, I_m) independently for every input (a random lookup table);
    smooth:  f(x) = A tanh(W x + c) / sqrt(H),  W, c, A ~ N(0, 1) entries, W scaled by
             1/sqrt(n_in), H = 64 hidden units (a smooth random function of x).

Metric: ``mse``, the mean squared error per output over the fixed set (training set =
evaluation set, as in the capacity task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnncap.base.fields import bounded, choice
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches
from rnncap.tasks.capacity import check_distinct_inputs, distinct_binary_rows

FUNCTIONS = ("table", "smooth")
SMOOTH_HIDDEN = 64


def random_function(x: Tensor, kind: str, output_dim: int, generator: torch.Generator) -> Tensor:
    """Targets [S, m] of inputs [S, n_in] under a fixed random function (module doc)."""
    if kind == "table":
        return torch.randn(len(x), output_dim, generator=generator)
    w = torch.randn(x.shape[1], SMOOTH_HIDDEN, generator=generator) / math.sqrt(x.shape[1])
    c = torch.randn(SMOOTH_HIDDEN, generator=generator)
    a = torch.randn(SMOOTH_HIDDEN, output_dim, generator=generator)
    return torch.tanh(x @ w + c) @ a / math.sqrt(SMOOTH_HIDDEN)


@dataclass
class RCFConfig(TaskConfig):
    """``task=rcf``: b random binary inputs -> fixed random real targets."""

    _target_: str = "rnncap.tasks.rcf.RCFTask"
    name: str = "rcf"
    samples: int = bounded(1000, ge=1)  # b, held fixed (the paper fixes it; its value is open)
    input_dim: int = bounded(16, ge=1)  # n_in; distinct binary inputs, so samples <= 2^input_dim
    steps: int = bounded(5, ge=1)  # T: input at step 1, zeros after, targets read at step T
    output_dim: int = bounded(1, ge=1)  # m real outputs per input
    # table: an i.i.d. N(0,1) target per input (real-valued random labels);
    # smooth: a fixed random tanh network of the input (64 hidden units)
    function: str = choice("table", *FUNCTIONS)


class RCFTask(TaskDataModule):
    """Random binary inputs -> fixed random real targets; metric: mse."""

    name = "rcf"
    objective = "mse"
    objective_direction = "minimize"
    config: RCFConfig

    @classmethod
    def check_config(cls, node: Any) -> None:
        check_distinct_inputs(node)

    @property
    def input_size(self) -> int:
        return self.config.input_dim

    @property
    def output_size(self) -> int:
        return self.config.output_dim

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        x = distinct_binary_rows(self.config.samples, self.config.input_dim, generator).float()
        targets = random_function(x, self.config.function, self.config.output_dim, generator)
        inputs = torch.zeros(self.config.samples, self.config.steps, self.config.input_dim)
        inputs[:, 0] = x
        data = TensorBatches(inputs, targets)
        return data, data

    def settings(self) -> dict[str, Any]:
        return {
            "samples": self.config.samples,
            "steps": self.config.steps,
            "output_dim": self.config.output_dim,
            "function": self.config.function,
        }

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return ((outputs[:, -1] - batch[1]) ** 2).mean()

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        per_sample = ((outputs[:, -1] - batch[1]) ** 2).mean(1)
        return {"mse": per_sample.sum(), "count": torch.tensor(float(len(per_sample)))}
