"""Per-unit capacity ("memory throughput", Collins et al. 2017, section 3.2).

A random vector x in R^n_in, i.i.d. components of variance s^2 (s = ``input_scale``; normal,
or uniform on [-sqrt(3) s, sqrt(3) s]), is shown at step 1, zeros follow, and after ``delay``
more steps a linear readout of the top layer must reconstruct it:

    mse        = E ||x_hat - x||^2 / (n_in s^2)      (normalised by the input variance)
    r2         = 1 - SSE / SST                       (SST: evaluation targets about their mean)
    theory_mse = max(0, (n_in - N) / n_in)           (N units per layer: one real per unit)

For comparison, ``mc`` is Jaeger's memory capacity of the trained network (Jaeger 2002, "Short
term memory in echo state networks"; the convention of reservoirpy's ``memory_capacity``):
driven by a stream of fresh i.i.d. inputs x_t (one vector per step), with h_t the top layer's
state after reading x_t, a least-squares linear readout of h_t is fitted to each component of
x_{t-k} for the delays k = 1 .. mc_delays, and

    mc = sum_{k=1}^{mc_delays} sum_d corr^2(x_{t-k, d}, readout_{k, d}(h_t))

on held-out streams. Delay 0 (the current input) is not counted. Summed over all delays and
components it is at most N, the top layer's width (Jaeger 2002).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded, choice
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches

DISTRIBUTIONS = ("normal", "uniform")
MC_STREAM_STEPS = 100  # length of each driving stream for ``mc``, washout included


def draw_inputs(
    shape: tuple[int, ...], distribution: str, scale: float, generator: torch.Generator
) -> Tensor:
    """I.i.d. inputs of mean 0 and variance ``scale**2``."""
    if distribution == "normal":
        return scale * torch.randn(shape, generator=generator)
    return scale * math.sqrt(3.0) * (2 * torch.rand(shape, generator=generator) - 1)


def squared_correlation(target: Tensor, estimate: Tensor) -> Tensor:
    """corr^2 of matching columns of two [S, D] matrices (0 where either is constant)."""
    t, e = target - target.mean(0), estimate - estimate.mean(0)
    cov, var = (t * e).sum(0), (t * t).sum(0) * (e * e).sum(0)
    return torch.where(var > 0, cov**2 / var.clamp_min(1e-300), torch.zeros_like(var))


@dataclass
class MemoryConfig(TaskConfig):
    """``task=memory``: show a random vector once, reconstruct it ``delay`` steps later."""

    _target_: str = "rnncap.tasks.memory.MemoryTask"
    name: str = "memory"
    input_dim: int = bounded(64, ge=1)  # n_in, the paper's 64; theory: max(0, (n_in - N)/n_in)
    # steps between showing x (step 1, zeros after) and reading it (step delay+1); open in the
    # paper: 4 gives 5 steps, the capacity task's T
    delay: int = bounded(4, ge=0)
    input_scale: float = bounded(1.0, gt=0)  # std s of each component (mse is divided by s^2)
    # normal | uniform (on [-sqrt(3)s, sqrt(3)s]); both i.i.d., variance s^2
    distribution: str = choice("normal", *DISTRIBUTIONS)
    samples: int = bounded(4096, ge=1)  # fixed training set of vectors
    eval_samples: int = bounded(1024, ge=1)  # held-out vectors: mse, r2 are measured here
    # Jaeger memory capacity: sum over delays k = 1..mc_delays of corr^2(x_{t-k}, readout of
    # h_t), h_t read after x_t (delay 0 not counted); 0 = skip (mc: null)
    mc_delays: int = bounded(10, ge=0)
    mc_samples: int = bounded(2000, ge=1)  # (state, delayed input) pairs to fit mc's readouts
    batch_size: int | None = bounded(256, ge=1)  # minibatch of training vectors; null = full
    data_file: str | None = None  # a file from `rnncap generate data` to load instead


class MemoryTask(TaskDataModule):
    """Show a random vector once, reconstruct it ``delay`` steps later; metric: normalised mse."""

    name = "memory"
    objective = "mse"
    objective_direction = "minimize"
    config: MemoryConfig

    def __init__(self, config: MemoryConfig) -> None:
        super().__init__(config)
        self.eval_sst = 0.0

    @classmethod
    def check_config(cls, node: Any) -> None:
        if node.mc_delays >= MC_STREAM_STEPS:
            raise ConfigError(f"task.mc_delays={node.mc_delays} must be < {MC_STREAM_STEPS}")

    @property
    def input_size(self) -> int:
        return self.config.input_dim

    @property
    def output_size(self) -> int:
        return self.config.input_dim

    @property
    def variance(self) -> float:
        return self.config.input_scale**2

    def _sequences(self, count: int, generator: torch.Generator) -> TensorBatches:
        x = draw_inputs(
            (count, self.config.input_dim),
            self.config.distribution,
            self.config.input_scale,
            generator,
        )
        inputs = torch.zeros(count, self.config.delay + 1, self.config.input_dim)
        inputs[:, 0] = x
        return TensorBatches(inputs, x)

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        train = self._sequences(self.config.samples, generator)
        evaluation = self._sequences(self.config.eval_samples, generator)
        return train, evaluation

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        x = self.eval_set.tensors[1].double()  # r2's SST, whether generated or loaded
        self.eval_sst = float(((x - x.mean(0)) ** 2).sum())

    def settings(self) -> dict[str, Any]:
        return {
            "delay": self.config.delay,
            "input_scale": self.config.input_scale,
            "input_dim": self.config.input_dim,
            "distribution": self.config.distribution,
            "samples": self.config.samples,
        }

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return ((outputs[:, -1] - batch[1]) ** 2).mean() / self.variance

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        sse = ((outputs[:, -1] - batch[1]) ** 2).sum(1)  # [B]
        mse = (sse / (self.config.input_dim * self.variance)).sum()
        return {"mse": mse, "count": torch.tensor(float(len(sse)))}

    def summarise(self, totals: dict[str, float], params: int) -> dict[str, Any]:
        mse = totals["mse"] / totals["count"]
        sse = totals["mse"] * self.config.input_dim * self.variance
        return {"mse": mse, "r2": 1.0 - sse / self.eval_sst}

    def evaluate(self, model: torch.nn.Module, params: int) -> dict[str, Any]:
        width = model.hidden_size
        return {
            **super().evaluate(model, params),
            "theory_mse": max(0.0, (self.config.input_dim - width) / self.config.input_dim),
            "mc": self.memory_capacity(model) if self.config.mc_delays > 0 else None,
        }

    @torch.no_grad()
    def top_states(self, model: torch.nn.Module, inputs: Tensor) -> Tensor:
        """The top layer's depth output [B, T, N] (the readout's input) for inputs [B, T, I]."""
        captured: list[Tensor] = []
        hook = model.readout.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        was_training = model.training
        model.eval()
        try:
            model(inputs.to(next(model.parameters()).device))
        finally:
            hook.remove()
            model.train(was_training)
        return captured[0].transpose(0, 1)  # the stack's readout sees time-major [T, B, N]

    def memory_capacity(self, model: torch.nn.Module) -> float:
        """Jaeger's memory capacity, summed over input components and delays 1..K (module doc)."""
        k_max, steps = self.config.mc_delays, MC_STREAM_STEPS
        per_stream = steps - k_max  # the first k_max states are washout: x_{t-k_max} must exist
        streams = math.ceil(self.config.mc_samples / per_stream)
        generator = torch.Generator().manual_seed(self.config.seed + 7919)
        shape = (2 * streams, steps, self.config.input_dim)
        u = draw_inputs(shape, self.config.distribution, self.config.input_scale, generator)
        h = self.top_states(model, u).double().cpu()  # [2S, T, N]
        if not torch.isfinite(h).all():
            return math.nan  # a diverged network: the run reports it as such
        feats = torch.cat([h[:, k_max:], torch.ones_like(h[:, k_max:, :1])], -1)
        fit, score = feats[:streams].flatten(0, 1), feats[streams:].flatten(0, 1)
        total = 0.0
        for k in range(1, k_max + 1):
            target = u[:, k_max - k : steps - k].double()  # x_{t-k} aligned with h_t
            y_fit, y_score = target[:streams].flatten(0, 1), target[streams:].flatten(0, 1)
            weights = torch.linalg.lstsq(fit, y_fit, driver="gelsd").solution
            total += float(squared_correlation(y_score, score @ weights).sum())
        return total
