"""The one cell API that every rnncap cell follows.

A cell is one layer of a recurrent network. It owns

* ``weight_ih`` [G*N, I]: the packed input weights of its G gate blocks,
* ``weight_hh`` [G*N, N]: the packed recurrent weights,
* ``bias`` [G*N]: one bias per gate block (so a cell with G blocks has ``G * (N*(I+N) + N)``
  parameters, the count of Collins et al. 2017, arXiv 1611.09913),
* ``initial_h`` [N] (and ``initial_c`` for the LSTM): the learned initial state.

The gate bias ``b_fg`` (``cell.gate_bias``) is a constant added inside the sigmoid of the
update/forget gate(s); it is a tuned hyperparameter, not a trained parameter. It is held in a
float64 buffer (``gate_bias_value``), so that ``torch.func.vmap`` can give each member of a
population its own value.

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

Options every cell may take or refuse:

* ``cell.nonlinearity=modrelu`` (Arjovsky et al. 2016): s(z) = sgn(z) ReLU(|z| + b), with a
  learned bias b [N] (``modrelu_bias``, counted) per unit; for real z, sign(z) ReLU(|z| + b).
  A class lists it in ``allowed_nonlinearities`` where s acts on one N-wide block (RNN, GRU).
* ``cell.orthogonal=exp|cayley``: every N x N block of ``weight_hh`` stays orthogonal while
  training (``rnncap.cells.orthogonal``); classes with ``allows_orthogonal`` take it.

A cell whose parameters are not this layout (the uRNN, the LRU) overrides
``make_parameters``, ``reset_parameters``, ``param_count`` and, where its depth output is not
N wide, ``layer_output_size``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from rnncap.base.errors import ConfigError
from rnncap.cells.compiled import COMPILE_MODES, CompiledLoop
from rnncap.cells.orthogonal import BlockOrthogonal

State = tuple[Tensor, ...]

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}
MODRELU = "modrelu"  # needs its bias: RecurrentCell.act applies it
RECURRENT_INITS = ("orthogonal", "identity", "xavier", "chain")


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """modReLU (Arjovsky et al. 2016): ReLU(|z| + b) z/|z| (0 at z = 0); for real z,
    sign(z) ReLU(|z| + b). ``torch.sgn`` is z/|z| for complex and real z alike."""
    return torch.relu(z.abs() + b) * torch.sgn(z)


class RecurrentCell(nn.Module):
    """Base class: subclasses set ``num_gates``, ``forget_gates`` and implement ``step``."""

    num_gates: int = 1
    forget_gates: tuple[int, ...] = ()  # gate blocks that receive the gate bias b_fg
    state_tensors: int = 1  # 1 for (h,), 2 for the LSTM's (h, c)
    allowed_nonlinearities: tuple[str, ...] = tuple(NONLINEARITIES)  # MODRELU where it applies
    allowed_recurrent_inits: tuple[str, ...] = RECURRENT_INITS
    allows_orthogonal: bool = False  # cell.orthogonal: its weight_hh is G dense N x N blocks
    needs_square_input: bool = False  # the +RNN's depth path needs input size == N
    square_recurrent: bool = True  # has N x N recurrent blocks (recurrent_init=chain needs them)
    use_native: bool = True  # run the fused PyTorch kernel where it computes the same function

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str | None = None,  # None: the class's first allowed (tanh mostly)
        gate_bias: float = 0.0,
        recurrent_init: str = "orthogonal",
        recurrent_scale: float = 1.0,
        input_scale: float = 1.0,
        bias_init: float = 0.0,
        compile: bool | str = False,
        orthogonal: str | None = None,
    ) -> None:
        super().__init__()
        nonlinearity = nonlinearity or self.allowed_nonlinearities[0]
        self.check_options(type(self).__name__, nonlinearity, recurrent_init, orthogonal)
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
        # a buffer, not a float: population training (vmap) gives each member its own b_fg;
        # float64, so that it adds exactly as the float did, in float64 models as in float32
        gate = torch.tensor(float(gate_bias), dtype=torch.float64)
        self.register_buffer("gate_bias_value", gate, persistent=False)
        self.recurrent_init, self.recurrent_scale = recurrent_init, float(recurrent_scale)
        self.input_scale, self.bias_init = float(input_scale), float(bias_init)
        self.orthogonal = orthogonal
        self.make_parameters()
        self.reset_parameters()
        if orthogonal is not None:  # after the init: B_k is the initial block
            blocks = BlockOrthogonal(self.num_gates, hidden_size, orthogonal)
            parametrize.register_parametrization(self, "weight_hh", blocks, unsafe=True)

    @property
    def gate_bias(self) -> float:
        """The gate bias b_fg (``cell.gate_bias``); held in the buffer ``gate_bias_value``."""
        return float(self.gate_bias_value)

    def make_parameters(self) -> None:
        """weight_ih [G*N, I], weight_hh [G*N, N], bias [G*N], initial_h [N] (and initial_c),
        modrelu_bias [N] with ``nonlinearity=modrelu``; values come from ``reset_parameters``."""
        g, n = self.num_gates, self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g * n, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(g * n, n))
        self.bias = nn.Parameter(torch.empty(g * n))
        self.initial_h = nn.Parameter(torch.zeros(n))
        if self.state_tensors == 2:
            self.initial_c = nn.Parameter(torch.zeros(n))
        if self.nonlinearity == MODRELU:
            self.modrelu_bias = nn.Parameter(torch.zeros(n))
        forget_mask = torch.zeros(g * n)  # 1 on the blocks that receive b_fg
        for k in self.forget_gates:
            forget_mask[k * n : (k + 1) * n] = 1.0
        self.register_buffer("forget_mask", forget_mask, persistent=False)

    # ------------------------------------------------------------------ sizes
    @classmethod
    def param_count(
        cls,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        orthogonal: str | None = None,
        **_: object,
    ) -> int:
        """Trainable degrees of freedom of one layer, given the constructor's options:
        G*(N*(I+N)+N) weights and biases, the initial state(s), N modReLU biases with
        ``nonlinearity=modrelu``; with ``orthogonal`` each N x N recurrent block counts the
        N(N-1)/2 free entries of its skew-symmetric generator instead of N^2."""
        g, n = cls.num_gates, hidden_size
        recurrent = n * (n - 1) // 2 if orthogonal is not None else n * n
        total = g * (n * input_size + recurrent + n) + cls.state_tensors * n
        return total + (n if nonlinearity == MODRELU else 0)

    @classmethod
    def layer_output_size(cls, input_size: int, hidden_size: int) -> int:
        """Width of the depth output (the next layer's or the readout's input): N here."""
        return hidden_size

    @classmethod
    def input_projection(cls, **options: object) -> bool:
        """Whether a stack of this cell, with the constructor ``options``, first maps its input
        to N units (a linear map, I*N + N parameters): the +RNN's depth path needs an input of
        size N; the LRU block's residual (``rnncap.cells.lru``) needs one width throughout."""
        return cls.needs_square_input

    @property
    def output_size(self) -> int:
        return self.layer_output_size(self.input_size, self.hidden_size)

    @classmethod
    def recurrent_inits(cls) -> tuple[str, ...]:
        """The ``cell.recurrent_init`` values the class takes: its ``allowed_recurrent_inits``,
        ``chain`` only where it has N x N recurrent blocks (``square_recurrent``)."""
        return tuple(i for i in cls.allowed_recurrent_inits if i != "chain" or cls.square_recurrent)

    @classmethod
    def check_options(
        cls,
        cell: str,
        nonlinearity: str | None = None,
        recurrent_init: str | None = None,
        orthogonal: str | None = None,
    ) -> None:
        """The one statement of which shared option values the class takes, with the message
        that names them: ``rnncap.core.validate`` calls it on the composed config (``cell`` is
        the option's name), the constructor on its arguments (the class's name)."""
        if nonlinearity is not None and nonlinearity not in cls.allowed_nonlinearities:
            raise ConfigError(
                f"cell.nonlinearity={nonlinearity!r} is not allowed for cell={cell}; "
                f"choose one of {', '.join(cls.allowed_nonlinearities)}"
            )
        inits = cls.recurrent_inits()
        if recurrent_init is not None and recurrent_init not in inits:
            square = recurrent_init == "chain" and "chain" in cls.allowed_recurrent_inits
            why = " (it has no N x N recurrent blocks)" if square else ""
            raise ConfigError(
                f"cell.recurrent_init={recurrent_init!r} is not allowed for cell={cell}{why}; "
                f"choose one of {', '.join(inits)}"
            )
        if orthogonal is not None and not cls.allows_orthogonal:
            raise ConfigError(
                f"cell.orthogonal={orthogonal!r} is not allowed for cell={cell}: it has no dense "
                "N x N recurrent blocks to keep orthogonal; set cell.orthogonal=null"
            )

    @classmethod
    def check_config(cls, node: object) -> None:
        """Raise ``ConfigError`` on a bad combination of the cell's own keys (none here)."""

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Input weights: Xavier-uniform per gate block times ``input_scale``; recurrent
        blocks: ``recurrent_init`` times ``recurrent_scale`` (with ``cell.orthogonal``: the new
        B_k, orthogonalised); biases: ``bias_init``; modReLU biases and initial states: 0."""
        n = self.hidden_size
        with torch.no_grad():
            for w in self.weight_ih.split(n, 0):
                nn.init.xavier_uniform_(w)
                w.mul_(self.input_scale)
            orthogonal = parametrize.is_parametrized(self, "weight_hh")
            # the blocks as the cell holds them (a cell may have fewer, or a vector: IndRNN)
            shape = (self.num_gates * n, n) if orthogonal else self.weight_hh.shape
            recurrent = self.weight_ih.new_empty(shape)
            for w in recurrent.split(n, 0):
                self._init_recurrent_block(w)
            if orthogonal:
                self.weight_hh = recurrent  # the parametrisation's right inverse: new B_k
            else:
                self.weight_hh.copy_(recurrent)
            self.bias.fill_(self.bias_init)
            self.initial_h.zero_()
            if self.state_tensors == 2:
                self.initial_c.zero_()
            if self.nonlinearity == MODRELU:
                self.modrelu_bias.zero_()  # b = 0: the identity at first, as the uRNN starts

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
        return self.bias + self.gate_bias_value * self.forget_mask

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

    def act(self, z: Tensor) -> Tensor:
        """The nonlinearity s of the (candidate) state: tanh, ReLU or modReLU."""
        if self.nonlinearity == MODRELU:
            return modrelu(z, self.modrelu_bias)
        return NONLINEARITIES[self.nonlinearity](z)

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        """One time step: (layer input [B, I], its projection [B, G*N], state) -> (state, y_t)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer over a sequence: [T, B, I] -> depth outputs [T, B, N]."""
        # a parametrised weight_hh (cell.orthogonal) is computed once per sequence, not per step
        cached = parametrize.cached() if parametrize.is_parametrized(self) else nullcontext()
        with cached:
            if self.use_native and self.native_available():
                return self.native_forward(x)
            graphed = self._compiled.graphed_layer(self, x)  # None unless compile="graphed"
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
            f"(x{self.recurrent_scale:g}), orthogonal={self.orthogonal}"
        )
