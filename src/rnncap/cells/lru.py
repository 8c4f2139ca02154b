"""Linear Recurrent Unit, LRU (Orvieto et al. 2023, arXiv 2303.06349, section 3, appendix A).

The bare recurrent layer: complex diagonal state x_t in C^N, real input u_t in R^H,

    lambda = exp(-exp(nu) + i exp(theta))            exponential parametrisation, |lambda| < 1
    x_t    = lambda * x_{t-1} + gamma * (B u_t)      B = B_re + i B_im in C^{N x H}
    y_t    = Re(C x_t) + D * u_t                     C = C_re + i C_im in C^{H x N}, D in R^H

with gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2) and trained, as in the
paper's code (appendix A). This is the layer, not the paper's block: no normalisation, no
MLP/GLU and no skip around it, because an rnncap stack puts nothing between its layers for
any cell (each layer reads the one below, a linear readout reads the top), so the LRU stack is
counted and trained like the others. The price is that the stack is linear in its input: the
paper's nonlinearity lives in the block's MLP. H is the layer's input width (the diagonal skip
D * u_t needs dim y = dim u): the first layer's H is the task's input size, every layer's depth
output is H wide, and N (``model.hidden``) is the state size alone.

Parameters, 4*N*H + 5*N + H per layer:

* ``nu_log``, ``theta_log``, ``gamma_log`` [N]: lambda's log-log modulus and log phase, gamma;
* ``weight_ih`` [2N, H]: [B_re; B_im];  ``weight_hy`` [2, H, N]: [C_re, C_im];  ``skip`` D [H];
* ``initial_h`` [2N]: the learned initial state [Re x_0, Im x_0] (zero at first, the paper's
  x_0; learned as every rnncap cell's initial state is).

Init (appendix A): |lambda|^2 ~ U[r_min^2, r_max^2], arg(lambda) ~ U[0, max_phase] (the cell
keys ``r_min``, ``r_max``, ``max_phase``); B_re, B_im ~ N(0, 1/(2H)) times ``input_scale``;
C_re, C_im ~ N(0, 1/N); D ~ N(0, 1). ``recurrent_init`` has the one value ``orthogonal`` (not
used: lambda's ring is the init), and ``recurrent_scale``, ``bias_init``, ``gate_bias`` are not
used. The recurrence is linear, so ``forward`` runs a parallel scan over time (``use_scan``);
the step loop computes the same and runs with ``use_scan = False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnncap.cells.base import RecurrentCell, State
from rnncap.cells.config import CellConfig
from rnncap.core.errors import ConfigError
from rnncap.core.fields import bounded


@dataclass
class LRUConfig(CellConfig):
    """The shared cell keys and the LRU's init ring: r_min <= |lambda| < r_max <= 1."""

    nonlinearity: str = "linear"  # the layer is linear; its class allows nothing else
    r_min: float = bounded(0.0, ge=0)  # smallest |lambda| at init
    r_max: float = bounded(1.0, gt=0)  # largest |lambda| at init (<= 1)
    max_phase: float = bounded(6.28, gt=0)  # arg(lambda) ~ U[0, max_phase] at init


class LRUCell(RecurrentCell):
    """LRU layer: x_t = lambda * x_{t-1} + gamma * B u_t; depth output Re(C x_t) + D * u_t."""

    allowed_nonlinearities = ("linear",)
    allowed_recurrent_inits = ("orthogonal",)  # not used: the ring r_min, r_max is the init
    square_recurrent = False  # a diagonal complex recurrence
    use_native = False  # no fused kernel; the scan below is its fast path
    use_scan = True  # forward: parallel scan over time; False: the step loop
    display = {"lru": ("LRU", "#17becf")}
    display_rank = {"lru": 21}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 6.28,
        **kwargs: Any,
    ) -> None:
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        super().__init__(input_size, hidden_size, **kwargs)

    @classmethod
    def check_config(cls, node: Any) -> None:
        if not node.r_min <= node.r_max <= 1 or node.r_min >= 1:
            raise ConfigError(
                f"cell.r_min={node.r_min:g}, cell.r_max={node.r_max:g}: the LRU needs "
                "0 <= r_min <= r_max <= 1 and r_min < 1 (|lambda| < 1 at init)"
            )

    def make_parameters(self) -> None:
        n, h = self.hidden_size, self.input_size
        self.nu_log, self.theta_log = nn.Parameter(torch.empty(n)), nn.Parameter(torch.empty(n))
        self.gamma_log = nn.Parameter(torch.empty(n))
        self.weight_ih = nn.Parameter(torch.empty(2 * n, h))
        self.weight_hy = nn.Parameter(torch.empty(2, h, n))
        self.skip = nn.Parameter(torch.empty(h))
        self.initial_h = nn.Parameter(torch.zeros(2 * n))

    def reset_parameters(self) -> None:
        n, h = self.hidden_size, self.input_size
        with torch.no_grad():
            u1 = torch.rand(n).clamp_min(torch.finfo(torch.float32).tiny)  # |lambda| > 0
            modulus_sq = u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2
            self.nu_log.copy_(torch.log(-0.5 * torch.log(modulus_sq)))
            u2 = torch.rand(n).clamp_min(torch.finfo(torch.float32).tiny)  # arg(lambda) > 0
            self.theta_log.copy_(torch.log(self.max_phase * u2))
            self.gamma_log.copy_(0.5 * torch.log1p(-modulus_sq))  # log sqrt(1 - |lambda|^2)
            self.weight_ih.normal_(0.0, self.input_scale / math.sqrt(2 * h))
            self.weight_hy.normal_(0.0, 1 / math.sqrt(n))
            self.skip.normal_()
            self.initial_h.zero_()

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, **_: object) -> int:
        """2NH (B) + 2HN (C) + H (D) + 3N (nu, theta, gamma) + 2N (x_0)."""
        n, h = hidden_size, input_size
        return 4 * n * h + h + 5 * n

    @classmethod
    def layer_output_size(cls, input_size: int, hidden_size: int) -> int:
        return input_size  # y_t = Re(C x_t) + D * u_t has the input's width H

    # ------------------------------------------------------------------ compute
    def recurrence(self) -> Tensor:
        """lambda = exp(-exp(nu) + i exp(theta)): complex [N]."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def initial_state(self, batch: int) -> State:
        re, im = self.initial_h.chunk(2)
        return (torch.complex(re, im).expand(batch, -1),)

    def project_inputs(self, x: Tensor) -> Tensor:
        """gamma * (B u_t) for all steps: [T, B, H] -> complex [T, B, N]."""
        re, im = (x @ self.weight_ih.t()).chunk(2, -1)
        return torch.exp(self.gamma_log) * torch.complex(re, im)

    def output(self, x_state: Tensor, u: Tensor) -> Tensor:
        """y = Re(C x) + D * u = C_re Re(x) - C_im Im(x) + D * u."""
        c_re, c_im = self.weight_hy
        return x_state.real @ c_re.t() - x_state.imag @ c_im.t() + self.skip * u

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (x_state,) = state
        x_state = self.recurrence() * x_state + xp_t
        return (x_state,), self.output(x_state, x_t)

    def forward(self, x: Tensor) -> Tensor:
        """[T, B, H] -> [T, B, H]: the parallel scan, or the step loop without ``use_scan``."""
        if not self.use_scan:
            return super().forward(x)
        drive = self.project_inputs(x)  # [T, B, N]
        (x0,) = self.initial_state(x.shape[1])
        states = linear_scan(self.recurrence(), drive, x0)
        return self.output(states, x)


def linear_scan(decay: Tensor, drive: Tensor, x0: Tensor) -> Tensor:
    """All x_t = decay * x_{t-1} + drive_t, t = 1..T, from x0, in ceil(log2 T) doubling
    steps (Hillis-Steele): after the step of offset d, x_t holds the sum of
    decay^k * drive_{t-k} for k < 2d, which reaches t = 1 (with x0 folded into drive_1)
    once 2d >= t. decay [N], drive [T, B, N], x0 [B, N] -> [T, B, N]."""
    states = torch.cat((drive[:1] + decay * x0, drive[1:]))
    power, offset = decay, 1  # power = decay^offset
    while offset < len(states):
        states = torch.cat((states[:offset], states[offset:] + power * states[:-offset]))
        power, offset = power * power, 2 * offset
    return states
