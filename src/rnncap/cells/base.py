"""The one cell API that every rnncap cell follows.

A cell is one layer of a recurrent network. It owns

* ``weight_ih`` [G*N, I]: the packed input weights of its G gate blocks,
* ``weight_hh`` [G*N, N]: the packed recurrent weights,
* ``bias`` [G*N]: one bias per gate block (so a cell with G blocks has ``G * (N*(I+N) + N)``
  parameters, the count of Collins et al. 2017, arXiv 1611.09913),
* ``initial_h`` [N] (and ``initial_c`` for the LSTM): the learned initial state.

The gate bias ``b_fg`` (``cell.gate_bias``) is a constant added inside the sigmoid of the
update/forget gate(s); it is a tuned hyperparameter, not a trained parameter.

A sequence is processed as::

    xp = x @ weight_ih.T + bias + b_fg       # one GEMM for all T steps, [T, B, G*N]
    state = initial_state(B)
    for t in range(T):
        state, y_t = step(x[t], xp[t], state)

``step`` returns ``(new_state, depth_output)`` as flax cells do: for most cells the depth
output is ``h_t``; the +RNN returns its separate depth output ``y_t``.

Native path: where PyTorch's fused kernel computes exactly the cell's equations (RNN, IRNN
and the tanh LSTM), ``forward`` calls it (cuDNN on GPU, the fused CPU kernels otherwise) with
the cell's own packed weights, ``bias`` (+ b_fg on the forget block) as the input bias and a
constant zero as the kernel's second bias: no extra trainable parameter. Set
``cell.use_native = False`` to run the step loop instead (population training does, since
``torch.func.vmap`` cannot batch the fused kernels).

``cell.compile`` (off by default) runs the step loop compiled or CUDA-graphed (see
``rnncap.cells.compiled``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from rnncap.cells.compiled import COMPILE_MODES, CompiledLoop

State = tuple[Tensor, ...]

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}
RECURRENT_INITS = ("orthogonal", "identity", "xavier", "chain")


class RecurrentCell(nn.Module):
    """Base class: subclasses set ``num_gates``, ``forget_gates`` and implement ``step``."""

    # How figures and tables show a cell: config name -> (label, colour hex), and the config's
    # place in the paper's order. Keyed by config name, since one class can serve several configs
    # (IRNN is the rnn class); rnncap.analysis.tables shows a name missing here in upper case, in
    # a colour of matplotlib's cycle, after the ranked ones.
    display: ClassVar[dict[str, tuple[str, str]]] = {}
    display_rank: ClassVar[dict[str, int]] = {}

    num_gates: int = 1
    forget_gates: tuple[int, ...] = ()  # gate blocks that receive the gate bias b_fg
    state_tensors: int = 1  # 1 for (h,), 2 for the LSTM's (h, c)
    allowed_nonlinearities: tuple[str, ...] = tuple(NONLINEARITIES)
    needs_square_input: bool = False  # the +RNN's depth path needs input size == N
    square_recurrent: bool = True  # has N x N recurrent blocks (recurrent_init=chain needs them)
    use_native: bool = True  # run the fused PyTorch kernel where it computes the same function

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        gate_bias: float = 0.0,
        recurrent_init: str = "orthogonal",
        recurrent_scale: float = 1.0,
        input_scale: float = 1.0,
        bias_init: float = 0.0,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if nonlinearity not in self.allowed_nonlinearities:
            raise ValueError(
                f"cell.nonlinearity={nonlinearity!r} is not allowed for {type(self).__name__}; "
                f"choose one of {list(self.allowed_nonlinearities)}"
            )
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(
                f"cell.recurrent_init={recurrent_init!r}; choose one of {list(RECURRENT_INITS)}"
            )
        if recurrent_init == "chain" and not self.square_recurrent:
            others = [name for name in RECURRENT_INITS if name != "chain"]
            raise ValueError(
                f"cell.recurrent_init='chain' needs N x N recurrent blocks and "
                f"{type(self).__name__} has none; choose one of {others}"
            )
        if self.needs_square_input and input_size != hidden_size:
            raise ValueError(
                f"{type(self).__name__} needs input size == hidden size for its depth path "
                f"y = g*x + (1-g)*y_in, got input {input_size} and hidden {hidden_size}"
            )
        if compile not in COMPILE_MODES:
            raise ValueError(f"cell.compile={compile!r}; choose one of {list(COMPILE_MODES)}")
        self.compile_step: bool | str = compile
        self._compiled = CompiledLoop()  # built on first use, never copied or pickled
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity = nonlinearity
        self.act = NONLINEARITIES[nonlinearity]
        self.gate_bias = float(gate_bias)
        self.recurrent_init, self.recurrent_scale = recurrent_init, float(recurrent_scale)
        self.input_scale, self.bias_init = float(input_scale), float(bias_init)
        g, n = self.num_gates, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g * n, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g * n, n))
        self.bias = nn.Parameter(torch.empty(g * n))
        self.initial_h = nn.Parameter(torch.zeros(n))
        if self.state_tensors == 2:
            self.initial_c = nn.Parameter(torch.zeros(n))
        forget_mask = torch.zeros(g * n)  # 1 on the blocks that receive b_fg
        for k in self.forget_gates:
            forget_mask[k * n : (k + 1) * n] = 1.0
        self.register_buffer("forget_mask", forget_mask, persistent=False)
        self.reset_parameters()

    # ------------------------------------------------------------------ sizes
    @classmethod
    def param_count(cls, input_size: int, hidden_size: int) -> int:
        """Trainable parameters of one layer: G*(N*(I+N)+N) weights and biases + initial state."""
        n = hidden_size
        return cls.num_gates * (n * (input_size + n) + n) + cls.state_tensors * n

    @property
    def output_size(self) -> int:
        return self.hidden_size

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Input weights: Xavier-uniform per gate block times ``input_scale``; recurrent
        blocks: ``recurrent_init`` times ``recurrent_scale``; biases: ``bias_init``."""
        n = self.hidden_size
        with torch.no_grad():
            for w in self.weight_ih.split(n, 0):
                nn.init.xavier_uniform_(w)
                w.mul_(self.input_scale)
            for w in self.weight_hh.split(n, 0):
                self._init_recurrent_block(w)
            self.bias.fill_(self.bias_init)
            self.initial_h.zero_()
            if self.state_tensors == 2:
                self.initial_c.zero_()

    def _init_recurrent_block(self, w: Tensor) -> None:
        if self.recurrent_init == "orthogonal":
            nn.init.orthogonal_(w)
        elif self.recurrent_init == "identity":
            nn.init.eye_(w)
        elif self.recurrent_init == "chain":
            # Orhan & Pitkow 2020 (arXiv 1905.13715): ones on the first superdiagonal, zeros
            # elsewhere, so h_t[i] = s(h_{t-1}[i+1] + ...): activity moves one unit per step
            # along a non-normal chain (their PyTorch helpers' weight_hh; in their Keras runs,
            # h_{t-1} @ K, it is the subdiagonal: the same chain with the units reversed)
            w.zero_().diagonal(1).fill_(1.0)
        else:
            nn.init.xavier_uniform_(w)
        w.mul_(self.recurrent_scale)

    # ------------------------------------------------------------------ compute
    def initial_state(self, batch: int) -> State:
        """The learned initial state broadcast to the batch: a tuple of [B, N] tensors."""
        h0 = self.initial_h.expand(batch, -1)
        if self.state_tensors == 2:
            return (h0, self.initial_c.expand(batch, -1))
        return (h0,)

    def input_bias(self) -> Tensor:
        """``bias`` with the gate bias b_fg added on the update/forget blocks: [G*N]."""
        return self.bias + self.gate_bias * self.forget_mask

    def project_inputs(self, x: Tensor) -> Tensor:
        """All time steps' input pre-activations in one GEMM: [T, B, I] -> [T, B, G*N]."""
        t, b, _ = x.shape
        return torch.addmm(self.input_bias(), x.reshape(t * b, -1), self.weight_ih.t()).view(
            t, b, -1
        )

    def native_available(self) -> bool:
        """Whether a fused PyTorch kernel computes exactly this cell's equations."""
        return False

    def native_forward(self, x: Tensor) -> Tensor:
        """The fused-kernel equivalent of ``forward`` (only where ``native_available``)."""
        raise NotImplementedError

    def native_params(self) -> list[Tensor]:
        """Weights in the fused kernels' layout: [W_ih, W_hh, b_ih, b_hh], with the cell's one
        bias (+ b_fg) as b_ih and a constant zero b_hh (not a parameter)."""
        bias = self.input_bias()
        return [self.weight_ih, self.weight_hh, bias, torch.zeros_like(bias)]

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        """One time step: (layer input [B, I], its projection [B, G*N], state) -> (state, y_t)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer over a sequence: [T, B, I] -> depth outputs [T, B, N]."""
        if self.use_native and self.native_available():
            return self.native_forward(x)
        graphed = self._compiled.graphed_layer(self, x)  # None unless compile="graphed" applies
        return self.loop_forward(x) if graphed is None else graphed(x)

    def loop_forward(self, x: Tensor) -> Tensor:
        """The step loop over a sequence (eager, or the compiled step): [T, B, I] -> [T, B, N]."""
        xp = self.project_inputs(x)
        state = self.initial_state(x.shape[1])
        step, state = self._compiled.loop_step(self.step, self.compile_step, state)
        outputs = []
        for x_t, xp_t in zip(x.unbind(0), xp.unbind(0), strict=True):
            state, y_t = step(x_t, xp_t, state)
            outputs.append(y_t)
        return torch.stack(outputs)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity}, "
            f"gate_bias={self.gate_bias}, recurrent_init={self.recurrent_init}"
            f"(x{self.recurrent_scale:g})"
        )
