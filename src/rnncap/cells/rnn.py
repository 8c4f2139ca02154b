"""Vanilla RNN and IRNN (Collins et al. 2017, section 2.1).

    h_t = s(W_h h_{t-1} + W_x x_t + b),   s in {tanh, relu, modrelu}

The IRNN (Le et al. 2015) is this cell with ``nonlinearity=relu``, ``recurrent_init=identity``
and zero biases: a config (``conf/cell/irnn.yaml``), not a class. With tanh or ReLU it is the
same function as ``nn.RNN`` (one bias instead of two), so ``forward`` runs PyTorch's fused
kernel, also when ``cell.orthogonal`` parametrises W_h (the kernel gets the computed matrix).

``nonlinearity=modrelu``: s(z) = sign(z) ReLU(|z| + b_m), b_m [N] learned (``modrelu_bias``,
Arjovsky et al. 2016); the step loop runs it. ``cell.orthogonal=exp|cayley`` keeps W_h
orthogonal (expRNN with ``exp``; ``rnncap.cells.orthogonal``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import MODRELU, NONLINEARITIES, RecurrentCell, State


class RNNCell(RecurrentCell):
    """h_t = s(W_h h_{t-1} + W_x x_t + b). One gate block; state (h,); output h_t."""

    num_gates = 1
    allowed_nonlinearities = (*NONLINEARITIES, MODRELU)
    allows_orthogonal = True

    def native_available(self) -> bool:
        return self.nonlinearity in NONLINEARITIES  # nn.RNN has tanh and ReLU only

    def native_forward(self, x: Tensor) -> Tensor:
        kernel = torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu
        h0 = self.initial_h.expand(x.shape[1], -1).unsqueeze(0).contiguous()  # [1, B, N]
        out, _ = kernel(x, h0, self.native_params(), True, 1, 0.0, self.training, False, False)
        return out

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        h = self.act(torch.addmm(xp_t, h, self.weight_hh.t()))
        return (h,), h
