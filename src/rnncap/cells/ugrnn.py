"""Update-gate RNN, UGRNN (Collins et al. 2017, section 2.1, new in the paper).

    c_t = s(W_ch h_{t-1} + W_cx x_t + b_c)
    g_t = sigma(W_gh h_{t-1} + W_gx x_t + b_g + b_fg)
    h_t = g_t * h_{t-1} + (1 - g_t) * c_t

Gate order in the packed weights: [c, g].
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import RecurrentCell, State


class UGRNNCell(RecurrentCell):
    """One recurrent matmul per step for both blocks."""

    num_gates = 2
    forget_gates = (1,)

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        c_pre, g_pre = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(2, 1)
        c, g = self.act(c_pre), torch.sigmoid(g_pre)
        h = g * h + (1 - g) * c
        return (h,), h
