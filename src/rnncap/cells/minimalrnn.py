"""MinimalRNN (Chen 2017, "MinimalRNN: Toward more interpretable and trainable recurrent
neural networks", arXiv 1711.06788):

    z_t = Phi(x_t) = s(W_x x_t + b_z)                 s = tanh (the paper's Phi) or relu
    u_t = sigma(U_h h_{t-1} + U_z z_t + b_u + b_fg)
    h_t = u_t * h_{t-1} + (1 - u_t) * z_t

The input is encoded once into z_t in R^N, and the state only moves, unit by unit, part of
the way towards it: u -> 1 keeps the old state (b_fg, not in the paper, sits inside the
update gate's sigmoid as for the GRU). The encoder Phi is the paper's one dense tanh layer.

Parameters: ``weight_ih`` = W_x [N, I], ``weight_hh`` = U_h [N, N] (drawn by
``recurrent_init``, so ``chain`` applies), ``weight_zh`` = U_z [N, N] (Xavier-uniform times
``input_scale``, as input weights: it reads z_t, not the state), ``bias`` = [b_z, b_u] [2N]
and ``initial_h`` [N]: N*I + 2*N*N + 3*N. Since z_t and U_z z_t read x_t only, both are
computed for all T steps at once (``project_inputs``); a step has one recurrent matmul.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnncap.cells.base import RecurrentCell, State


class MinimalRNNCell(RecurrentCell):
    """Bias blocks [z, u]; ``step`` gets (z_t, U_z z_t + b_u + b_fg) from ``project_inputs``."""

    num_gates = 2
    forget_gates = (1,)

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, **kwargs)
        n = hidden_size  # the base class made G = 2 blocks of input and recurrent weights
        self.weight_ih = nn.Parameter(torch.empty(n, input_size))  # W_x: only z_t reads x_t
        self.weight_hh = nn.Parameter(torch.empty(n, n))  # U_h: only u_t reads h_{t-1}
        self.weight_zh = nn.Parameter(torch.empty(n, n))  # U_z
        self.reset_parameters()

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, **_: object) -> int:
        """W_x, U_h, U_z, b_z, b_u and the learned initial state: N*I + 2*N*N + 3*N."""
        n = hidden_size
        return n * input_size + 2 * n * n + 2 * n + n

    def reset_parameters(self) -> None:
        """The base class's initialisation, and U_z Xavier-uniform times ``input_scale``."""
        super().reset_parameters()
        weight_zh = getattr(self, "weight_zh", None)  # absent while the base class builds
        if weight_zh is not None:
            with torch.no_grad():
                nn.init.xavier_uniform_(weight_zh)
                weight_zh.mul_(self.input_scale)

    def project_inputs(self, x: Tensor) -> Tensor:
        """z_t and U_z z_t + b_u + b_fg for all steps: [T, B, I] -> [T, B, 2N]."""
        t, b, _ = x.shape
        b_z, b_u = self.input_bias().chunk(2)
        z = self.act(torch.addmm(b_z, x.reshape(t * b, -1), self.weight_ih.t()))
        u_in = torch.addmm(b_u, z, self.weight_zh.t())
        return torch.cat((z, u_in), 1).view(t, b, -1)

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        z, u_in = xp_t.chunk(2, 1)
        u = torch.sigmoid(torch.addmm(u_in, h, self.weight_hh.t()))
        h = u * h + (1 - u) * z
        return (h,), h
