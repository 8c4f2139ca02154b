"""GRU in the convention of Collins et al. 2017 (section 2.1).

    r_t = sigma(W_rh h_{t-1} + W_rx x_t + b_r)
    u_t = sigma(W_uh h_{t-1} + W_ux x_t + b_u + b_fg)
    c_t = s(W_ch (r_t * h_{t-1}) + W_cx x_t + b_c)
    h_t = u_t * h_{t-1} + (1 - u_t) * c_t

u -> 1 keeps the old state, and the reset gate multiplies h *before* the recurrent matmul
(cuDNN's ``nn.GRU`` applies it after, so it computes a different function).
Gate order in the packed weights: [r, u, c].

s in {tanh, relu, modrelu}: modReLU is sign(z) ReLU(|z| + b_m) with b_m [N] learned
(``modrelu_bias``). ``cell.orthogonal=exp|cayley`` keeps each of W_rh, W_uh, W_ch orthogonal
(the Cayley map is the NC-GRU idea; ``rnncap.cells.orthogonal``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import MODRELU, NONLINEARITIES, RecurrentCell, State


class GRUCell(RecurrentCell):
    """Paper-convention GRU: two recurrent matmuls per step ([r, u] together, then c)."""

    num_gates = 3
    forget_gates = (1,)
    allowed_nonlinearities = (*NONLINEARITIES, MODRELU)
    allows_orthogonal = True

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        n = self.hidden_size
        xp_ru, xp_c = xp_t.split((2 * n, n), 1)
        w_ru, w_c = self.weight_hh.split((2 * n, n), 0)
        r, u = torch.sigmoid(torch.addmm(xp_ru, h, w_ru.t())).chunk(2, 1)
        c = self.act(torch.addmm(xp_c, r * h, w_c.t()))
        h = u * h + (1 - u) * c
        return (h,), h
