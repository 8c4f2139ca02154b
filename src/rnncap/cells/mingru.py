"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201, section 3),
the sequential form:

    z_t  = sigma(W_zx x_t + b_z - b_fg)
    h~_t = W_hx x_t + b_h
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

Gate and candidate read x_t only: no recurrent weights, and no nonlinearity on h~_t (the
paper drops the tanh), so ``cell.nonlinearity`` has no role. This is the paper's sequential
("vanilla") minGRU; its log-space variant (appendix B) passes h~_t through
g(x) = x + 0.5 for x >= 0, sigmoid(x) for x < 0, to keep the state positive for a log-space
scan, and is not what is computed here. The paper has no b_fg; here it enters z_t with a minus
sign so that, as in the other cells, b_fg > 0 keeps the state: 1 - z_t = sigma(-(W_zx x_t +
b_z) + b_fg).

Parameters: ``weight_ih`` [2N, I] (gate order [z, h~]), ``bias`` [2N] and ``initial_h`` [N]:
2*(N*I + N) + N. ``recurrent_init`` and ``recurrent_scale`` have nothing to act on (``chain``
is refused). h_t is affine in h_{t-1} with coefficients from the inputs alone, so the layer
could also run as a parallel scan; the step loop runs it here (the tasks' T is short).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnncap.cells.base import RecurrentCell, State


class MinGRUCell(RecurrentCell):
    """Input-only gate and candidate; the step is element-wise (no matmul)."""

    num_gates = 2
    forget_gates = (0,)  # b_fg on z, with the sign that keeps the state (``input_bias``)
    allowed_nonlinearities = ("tanh",)  # unused: the candidate is linear, as published
    square_recurrent = False

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, **kwargs)
        del self.weight_hh  # the base class's N x N blocks: minGRU has no recurrent weights

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, **_: object) -> int:
        """Input weights and one bias per block, G*(N*I + N), + the learned initial state."""
        n = hidden_size
        return cls.num_gates * (n * input_size + n) + cls.state_tensors * n

    def reset_parameters(self) -> None:
        """Input blocks Xavier-uniform times ``input_scale``, biases ``bias_init``, initial
        state 0: the base class's initialisation without a recurrent block."""
        n = self.hidden_size
        with torch.no_grad():
            for w in self.weight_ih.split(n, 0):
                nn.init.xavier_uniform_(w)
                w.mul_(self.input_scale)
            self.bias.fill_(self.bias_init)
            self.initial_h.zero_()
            if self.state_tensors == 2:
                self.initial_c.zero_()

    def input_bias(self) -> Tensor:
        """``bias`` with b_fg subtracted on z: z_t -> 0 keeps the state."""
        return self.bias - self.gate_bias_value * self.forget_mask

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        z_pre, h_cand = xp_t.chunk(2, 1)
        z = torch.sigmoid(z_pre)
        h = (1 - z) * h + z * h_cand
        return (h,), h
