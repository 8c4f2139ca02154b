"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201, section 3),
the sequential form:

    f_t  = sigma(W_fx x_t + b_f + b_fg)
    i_t  = sigma(W_ix x_t + b_i)
    h~_t = W_hx x_t + b_h
    f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t

Gates and candidate read x_t only; there is no output gate and no cell state apart from h
(f', i' sum to one, so the state's scale does not grow with t). As for minGRU, this is the
paper's sequential form, with a linear candidate; the log-space variant's g(h~_t) is not
applied, and ``cell.nonlinearity`` has no role. b_fg (not in the paper) is added inside the
forget gate, as in the LSTM.

Parameters: ``weight_ih`` [3N, I] (gate order [f, i, h~]), ``bias`` [3N] and ``initial_h``
[N]: 3*(N*I + N) + N. No recurrent weights (built and initialised as ``MinGRUCell``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnncap.cells.base import RecurrentCell, State
from rnncap.cells.mingru import MinGRUCell


class MinLSTMCell(MinGRUCell):
    """Input-only gates and candidate; the step is element-wise (no matmul)."""

    num_gates = 3
    forget_gates = (0,)

    input_bias = RecurrentCell.input_bias  # b_fg added on f (minGRU subtracts it on z)

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        f_pre, i_pre, h_cand = xp_t.chunk(3, 1)
        f, i = torch.sigmoid(f_pre), torch.sigmoid(i_pre)
        f_norm, i_norm = f / (f + i), i / (f + i)
        h = f_norm * h + i_norm * h_cand
        return (h,), h
