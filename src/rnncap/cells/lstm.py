"""LSTM without peepholes (Collins et al. 2017, section 2.1).

    i_t = sigma(W_ih h_{t-1} + W_ix x_t + b_i)
    f_t = sigma(W_fh h_{t-1} + W_fx x_t + b_f + b_fg)
    o_t = sigma(W_oh h_{t-1} + W_ox x_t + b_o)
    c_in = s(W_ch h_{t-1} + W_cx x_t + b_c)
    c_t = f_t * c_{t-1} + i_t * c_in
    h_t = o_t * tanh(c_t)

Gate order in the packed weights: [i, f, c, o] (PyTorch's order, so the native kernel can be
used with b_fg folded into the forget bias). State (h, c), both with learned initial values.
With s = tanh this is ``nn.LSTM``'s function, so ``forward`` runs PyTorch's fused kernel
(cuDNN on GPU); with s = relu it runs the step loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import RecurrentCell, State


class LSTMCell(RecurrentCell):
    """One recurrent matmul per step for all four blocks."""

    num_gates = 4
    forget_gates = (1,)
    state_tensors = 2

    def native_available(self) -> bool:
        return self.nonlinearity == "tanh"  # nn.LSTM's candidate nonlinearity is fixed to tanh

    def native_forward(self, x: Tensor) -> Tensor:
        h0, c0 = (s.unsqueeze(0).contiguous() for s in self.initial_state(x.shape[1]))
        out, _, _ = torch.lstm(
            x, (h0, c0), self.native_params(), True, 1, 0.0, self.training, False, False
        )
        return out

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        h, c = state
        i, f, c_in, o = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(c_in)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h, c), h
