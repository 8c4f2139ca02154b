"""Vanilla RNN and IRNN (Collins et al. 2017, section 2.1).

    h_t = s(W_h h_{t-1} + W_x x_t + b),   s in {tanh, relu}

The IRNN (Le et al. 2015) is this cell with ``nonlinearity=relu``, ``recurrent_init=identity``
and zero biases: a config (``conf/cell/irnn.yaml``), not a class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import RecurrentCell, State


class RNNCell(RecurrentCell):
    """h_t = s(W_h h_{t-1} + W_x x_t + b). One gate block; state (h,); output h_t."""

    num_gates = 1

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        h = self.act(torch.addmm(xp_t, h, self.weight_hh.t()))
        return (h,), h
