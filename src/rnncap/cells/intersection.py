"""Intersection RNN, +RNN (Collins et al. 2017, section 2.1, new in the paper).

Two inputs (recurrent h_{t-1}, depth x_t) and two outputs (recurrent h_t, depth y_t):

    y_in = ReLU(W_yh h_{t-1} + W_yx x_t + b_y)
    h_in = tanh(W_hh h_{t-1} + W_hx x_t + b_h)
    g_y  = sigma(W_gyh h_{t-1} + W_gyx x_t + b_gy + b_fg)
    g_h  = sigma(W_ghh h_{t-1} + W_ghx x_t + b_gh + b_fg)
    y_t  = g_y * x_t + (1 - g_y) * y_in
    h_t  = g_h * h_{t-1} + (1 - g_h) * h_in

The depth path needs dim(x) == N, so a stack projects its input to N units before the first
layer. The nonlinearities are fixed by the paper (ReLU for y, tanh for h).
Gate order in the packed weights: [y_in, h_in, g_y, g_h].
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import RecurrentCell, State


class IntersectionCell(RecurrentCell):
    """+RNN: one recurrent matmul per step for all four blocks; ``step`` returns y_t."""

    num_gates = 4
    forget_gates = (2, 3)
    allowed_nonlinearities = ("tanh",)  # fixed by the paper: ReLU on y_in, tanh on h_in
    needs_square_input = True

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        y_pre, h_pre, gy_pre, gh_pre = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(4, 1)
        y_in, h_in = torch.relu(y_pre), torch.tanh(h_pre)
        g_y, g_h = torch.sigmoid(gy_pre), torch.sigmoid(gh_pre)
        y = g_y * x_t + (1 - g_y) * y_in
        h = g_h * h + (1 - g_h) * h_in
        return (h,), y
