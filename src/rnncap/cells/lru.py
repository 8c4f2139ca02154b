"""Linear Recurrent Unit, LRU (Orvieto et al. 2023, arXiv 2303.06349, section 3, appendices A, D).

The recurrent layer: complex diagonal state x_t in C^N, real input v_t in R^H,

    lambda = exp(-exp(nu) + i exp(theta))            exponential parametrisation, |lambda| < 1
    x_t    = lambda * x_{t-1} + gamma * (B v_t)      B = B_re + i B_im in C^{N x H}
    y_t    = Re(C x_t) + D * v_t                     C = C_re + i C_im in C^{H x N}, D in R^H

with gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2) and trained, as in the
paper's code (appendix A). The layer is linear in its input, so a stack of bare layers
(``cell.block=none``) is one linear map of the input sequence.

``cell.block=glu`` (the default) is the paper's LRU block (its Figure 1 "Norm - Recurrence -
GLU - Skip"; the published code's ``SequenceLayer`` with ``prenorm=True``, its training
script's default), for a layer input u_t in R^H:

    v_t   = LayerNorm(u_t) = (u_t - mean(u_t)) / sqrt(var(u_t) + 1e-6) * s + beta
    y_t   = the LRU layer above on v_t (its skip D * v_t reads the normalised input)
    g_t   = dropout(GELU(y_t))                       GELU's tanh form, as jax.nn.gelu's default
    out_t = u_t + dropout((W_1 g_t + b_1) * sigmoid(W_2 g_t + b_2))      the GLU, the skip

The normalisation is the paper's layer norm (biased variance over the H features of one step,
epsilon 1e-6 as flax's), not its batch norm: per example, so a population of models (vmap)
and the full-batch capacity task see one function. Dropout (``cell.dropout``, 0 by default)
acts in training only, one mask per sequence and feature shared by all steps (the code's
``broadcast_dims=[0]``); a population refuses a non-zero rate. The paper's encoder, a linear
map of the task input to the blocks' width H, is the stack's input projection
(``input_projection``): with the block, H = N (``model.hidden``) for every layer, so the
blocks' model width equals the state size (the paper's d_model, d_hidden; it often takes
d_hidden = d_model / 2). Without the block there is no projection: H is the layer's input
width (the task's input size for the first layer) and N the state size alone.

Parameters per layer, 4*N*H + 5*N + H, and with the block 2*H (s, beta) + 2*(H*H + H) more:

* ``nu_log``, ``theta_log``, ``gamma_log`` [N]: lambda's log-log modulus and log phase, gamma;
* ``weight_ih`` [2N, H]: [B_re; B_im];  ``weight_hy`` [2, H, N]: [C_re, C_im];  ``skip`` D [H];
* ``initial_h`` [2N]: the learned initial state [Re x_0, Im x_0] (zero at first, the paper's
  x_0; learned as every rnncap cell's initial state is);
* block: ``norm_weight`` s, ``norm_bias`` beta [H]; ``glu_weight`` [2H, H]: [W_1; W_2];
  ``glu_bias`` [2H]: [b_1; b_2].

Init (appendix A): |lambda|^2 ~ U[r_min^2, r_max^2], arg(lambda) ~ U[0, max_phase] (the cell
keys ``r_min``, ``r_max``, ``max_phase``); B_re, B_im ~ N(0, 1/(2H)) times ``input_scale``;
C_re, C_im ~ N(0, 1/N); D ~ N(0, 1); block: s = 1, beta = 0, W_1 and W_2 LeCun-normal (flax
Dense's default: a normal truncated at 2 sigma with variance 1/H), b_1 = b_2 = 0.
``recurrent_init`` has the one value ``orthogonal`` (not used: lambda's ring is the init), and
``recurrent_scale``, ``bias_init``, ``gate_bias`` are not used. The recurrence is linear, so
``forward`` runs a parallel scan over time (``use_scan``); the step loop computes the same
and runs with ``use_scan = False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded, choice
from rnncap.cells.base import RecurrentCell, State
from rnncap.cells.config import CellConfig

BLOCKS = ("glu", "none")  # cell.block: the paper's block around the layer, or the bare layer
LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's epsilon, the published code's normalisation
LECUN_TRUNCATION = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


@dataclass
class LRUConfig(CellConfig):
    """The shared cell keys, the LRU's init ring (r_min <= |lambda| < r_max <= 1) and its
    block: ``glu`` (the paper's LayerNorm -> LRU -> GELU -> GLU -> skip) or ``none``."""

    nonlinearity: str = "linear"  # the layer is linear; its class allows nothing else
    r_min: float = bounded(0.0, ge=0)  # smallest |lambda| at init
    r_max: float = bounded(1.0, gt=0)  # largest |lambda| at init (<= 1)
    max_phase: float = bounded(6.28, gt=0)  # arg(lambda) ~ U[0, max_phase] at init
    block: str = choice("glu", *BLOCKS)  # glu: the paper's block; none: the bare layer
    dropout: float = bounded(0.0, ge=0)  # the block's dropout rate in training (< 1)


class LRUCell(RecurrentCell):
    """LRU layer: x_t = lambda * x_{t-1} + gamma * B v_t, y_t = Re(C x_t) + D * v_t; with
    ``block="glu"`` wrapped as u_t + GLU(GELU(y_t)) with v_t = LayerNorm(u_t)."""

    allowed_nonlinearities = ("linear",)
    allowed_recurrent_inits = ("orthogonal",)  # not used: the ring r_min, r_max is the init
    square_recurrent = False  # a diagonal complex recurrence
    use_native = False  # no fused kernel; the scan below is its fast path
    use_scan = True  # forward: parallel scan over time; False: the step loop

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 6.28,
        block: str = "glu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if block not in BLOCKS:
            raise ValueError(f"cell.block={block!r}; choose one of {list(BLOCKS)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"cell.dropout={dropout!r}; choose a rate in [0, 1)")
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        self.block, self.dropout = block, float(dropout)
        super().__init__(input_size, hidden_size, **kwargs)

    @classmethod
    def check_config(cls, node: Any) -> None:
        if not node.r_min <= node.r_max <= 1 or node.r_min >= 1:
            raise ConfigError(
                f"cell.r_min={node.r_min:g}, cell.r_max={node.r_max:g}: the LRU needs "
                "0 <= r_min <= r_max <= 1 and r_min < 1 (|lambda| < 1 at init)"
            )
        if node.get("dropout", 0.0) >= 1:
            raise ConfigError(f"cell.dropout={node.dropout:g} is out of range: must be < 1")

    def make_parameters(self) -> None:
        n, h = self.hidden_size, self.input_size
        self.nu_log, self.theta_log = nn.Parameter(torch.empty(n)), nn.Parameter(torch.empty(n))
        self.gamma_log = nn.Parameter(torch.empty(n))
        self.weight_ih = nn.Parameter(torch.empty(2 * n, h))
        self.weight_hy = nn.Parameter(torch.empty(2, h, n))
        self.skip = nn.Parameter(torch.empty(h))
        self.initial_h = nn.Parameter(torch.zeros(2 * n))
        if self.block == "glu":
            self.norm_weight, self.norm_bias = (
                nn.Parameter(torch.empty(h)),
                nn.Parameter(torch.empty(h)),
            )
            self.glu_weight = nn.Parameter(torch.empty(2 * h, h))
            self.glu_bias = nn.Parameter(torch.empty(2 * h))

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
            if self.block == "glu":
                self.norm_weight.fill_(1.0)
                self.norm_bias.zero_()
                std = 1 / math.sqrt(h) / LECUN_TRUNCATION  # LeCun normal, truncated at 2 std
                nn.init.trunc_normal_(self.glu_weight, 0.0, std, -2 * std, 2 * std)
                self.glu_bias.zero_()

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, block: str = "glu", **_: object) -> int:
        """2NH (B) + 2HN (C) + H (D) + 3N (nu, theta, gamma) + 2N (x_0); the block adds 2H
        (LayerNorm s, beta) + 2(H*H + H) (the GLU's W_1, b_1, W_2, b_2)."""
        n, h = hidden_size, input_size
        block_count = 2 * h + 2 * (h * h + h) if block == "glu" else 0
        return 4 * n * h + h + 5 * n + block_count

    @classmethod
    def input_projection(cls, block: str = "glu", **_: object) -> bool:
        """The block's stack maps its input to N first: the paper's encoder to its blocks'
        width (the residual needs the block's input and output to be one width)."""
        return block == "glu"

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
        """[T, B, H] -> [T, B, H]: the layer, or with ``block="glu"`` the paper's block
        u + dropout(GLU(dropout(GELU(layer(LayerNorm(u))))))."""
        if self.block == "none":
            return self.layer_forward(x)
        v = F.layer_norm(x, x.shape[-1:], self.norm_weight, self.norm_bias, LAYER_NORM_EPS)
        g = self.drop(F.gelu(self.layer_forward(v), approximate="tanh"))
        linear, gate = F.linear(g, self.glu_weight, self.glu_bias).chunk(2, -1)
        return x + self.drop(linear * torch.sigmoid(gate))

    def layer_forward(self, x: Tensor) -> Tensor:
        """The bare layer, [T, B, H] -> [T, B, H]: the parallel scan, or the step loop
        without ``use_scan``."""
        if not self.use_scan:
            return super().forward(x)
        drive = self.project_inputs(x)  # [T, B, N]
        (x0,) = self.initial_state(x.shape[1])
        states = linear_scan(self.recurrence(), drive, x0)
        return self.output(states, x)

    def drop(self, y: Tensor) -> Tensor:
        """Dropout in training: one mask per sequence and feature, the same at every step."""
        if not self.training or self.dropout == 0:
            return y
        keep = torch.bernoulli(torch.full_like(y[0], 1 - self.dropout))
        return y * keep / (1 - self.dropout)


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
