"""IndRNN, the independently recurrent network (Li et al. 2018, "Independently recurrent
neural network (IndRNN): building a longer and deeper RNN", CVPR, arXiv 1803.04831):

    h_t = s(W x_t + u * h_{t-1} + b),   s = relu (the paper's) or tanh

u is a vector: each unit sees only its own previous state (a diagonal recurrent matrix), and
units mix only across layers. Parameters: ``weight_ih`` = W [N, I], ``weight_hh`` = u [N],
``bias`` = b [N] and ``initial_h`` [N]: N*I + 3*N.

u has initialisations of its own (``cell.recurrent_init``; ``IndRNNConfig``), both times
``recurrent_scale``: ``uniform``, u_i ~ U(0, 1), the authors' choice for ReLU (so that units
keep memories of different lengths), and ``identity``, u_i = 1 (their suggestion for a last
layer that is read at the last step only). The authors bound |u| by a power of 1/T for long
sequences and leave it free for short ones, as here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from rnncap.cells.base import RecurrentCell, State
from rnncap.cells.config import CellConfig

U_INITS = ("uniform", "identity")  # u_i ~ U(0, 1); u_i = 1
# the config's type, for Hydra to refuse another value at compose time
IndRNNInit = Enum("IndRNNInit", {name: name for name in U_INITS}, type=str)


@dataclass
class IndRNNConfig(CellConfig):
    """The shared cell keys; ``recurrent_init`` chooses among u's initialisations."""

    recurrent_init: IndRNNInit = IndRNNInit.uniform  # times recurrent_scale


class IndRNNCell(RecurrentCell):
    """h_t = s(W x_t + u * h_{t-1} + b): an element-wise recurrence, no recurrent matmul."""

    num_gates = 1
    square_recurrent = False
    allowed_recurrent_inits = U_INITS  # of the recurrent vector u

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "relu",
        recurrent_init: str = "uniform",
        **kwargs,
    ) -> None:
        self.check_options(type(self).__name__, recurrent_init=recurrent_init)
        # the base class checks the other options and makes an N x N block (identity: it draws
        # no random numbers), replaced by u
        super().__init__(input_size, hidden_size, nonlinearity, recurrent_init="identity", **kwargs)
        self.recurrent_init = recurrent_init
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, **_: object) -> int:
        """W, u, b and the learned initial state: N*I + 3*N."""
        return hidden_size * input_size + 3 * hidden_size

    def _init_recurrent_block(self, w: Tensor) -> None:
        if self.recurrent_init == "uniform":
            nn.init.uniform_(w, 0.0, 1.0)
        else:
            nn.init.ones_(w)
        w.mul_(self.recurrent_scale)

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        h = self.act(xp_t + self.weight_hh * h)
        return (h,), h
