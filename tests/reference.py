"""Literal float64 implementations of the paper's equations, one time step per line group.

Written independently of ``rnncap.cells``: they read the packed parameters by gate name
(gate orders as documented in each cell's docstring) and apply the equations verbatim.
A new cell registers its step here with ``@reference("<CellClass>", gates=[...])``; the
contract test (tests/test_contract.py) asks for it. A cell whose parameters are not the packed
[G*N, I], [G*N, N], [G*N] blocks gives ``read`` (its parameters by name, float64) and
``params`` (one layer's count, from its equations); a complex-state cell (the uRNN, the LRU)
registers ``gates=[]``, its own ``initial`` state and, for a structured recurrent matrix,
``matrix``: the dense matrix from the paper's factors next to the cell's own product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.utils.parametrize import type_before_parametrizations

sig = torch.sigmoid


def gates(cell, names):
    """Per-gate (W_x, W_h, b) from a cell's packed parameters, with b_fg added where due."""
    n = cell.hidden_size
    out = {}
    for k, name in enumerate(names):
        rows = slice(k * n, (k + 1) * n)
        b = cell.bias[rows].detach().double()
        if k in cell.forget_gates:
            b = b + cell.gate_bias
        out[name] = (
            cell.weight_ih[rows].detach().double(),
            cell.weight_hh[rows].detach().double(),
            b,
        )
    return out


def lin(g, x, h):
    wx, wh, b = g
    return x @ wx.T + h @ wh.T + b


def act(cell):
    if cell.nonlinearity == "modrelu":  # real modReLU: sign(z) ReLU(|z| + b), b learned per unit
        b = cell.modrelu_bias.detach().double()
        return lambda z: torch.sign(z) * torch.relu(z.abs() + b)
    return torch.tanh if cell.nonlinearity == "tanh" else torch.relu


@dataclass(frozen=True)
class Reference:
    """A cell's equations: its gate names in packed order, and one time step.

    ``step(cell, G, x_t, h, c) -> (h, c, y)`` with G = ``read(cell, gates)``: by default the
    per-gate (W_x, W_h, b) from ``gates``.
    """

    gates: tuple[str, ...]
    step: Callable
    states: int = 1  # learned initial state vectors: h, or (h, c)
    read: Callable = gates  # (cell, gate names) -> the parameters ``step`` reads
    initial: Callable | None = None  # (cell, batch) -> (h, c), where not initial_h/initial_c
    params: Callable | None = None  # (I, N) -> one layer's parameters, where not the formula
    # (with the cell's default options; a cell with options may take them as keywords)
    matrix: Callable | None = None  # cell -> (the cell's product, the dense matrix), complex

    def param_count(self, i: int, n: int) -> int:
        """One layer's trainable parameters: G*(N*(I+N)+N) + states*N (Collins et al. 2017),
        or the cell's own formula."""
        if self.params is not None:
            return self.params(i, n)
        return len(self.gates) * (n * (i + n) + n) + self.states * n


REFERENCES: dict[str, Reference] = {}  # cell class name -> its reference


def reference(class_name: str, gates: list[str], states: int = 1, **extra: Callable) -> Callable:
    """Register the decorated step as the float64 reference of the cell class ``class_name``
    (``extra``: ``initial``, ``params``, ``matrix``, see ``Reference``)."""

    def register(step: Callable) -> Callable:
        REFERENCES[class_name] = Reference(tuple(gates), step, states, **extra)
        return step

    return register


def reference_of(cls: type) -> Reference:
    if cls.__name__ not in REFERENCES:
        raise LookupError(
            f"no float64 reference for {cls.__name__}: add a step function decorated with "
            f'@reference("{cls.__name__}", gates=[...]) to tests/reference.py'
        )
    return REFERENCES[cls.__name__]


@reference("RNNCell", gates=["h"])
def rnn_step(cell, G, x_t, h, c):
    h = act(cell)(lin(G["h"], x_t, h))
    return h, c, h


@reference("UGRNNCell", gates=["c", "g"])
def ugrnn_step(cell, G, x_t, h, c):
    c_t = act(cell)(lin(G["c"], x_t, h))
    g_t = sig(lin(G["g"], x_t, h))
    h = g_t * h + (1 - g_t) * c_t
    return h, c, h


@reference("GRUCell", gates=["r", "u", "c"])
def gru_step(cell, G, x_t, h, c):
    r = sig(lin(G["r"], x_t, h))
    u = sig(lin(G["u"], x_t, h))
    wx, wh, b = G["c"]
    c_t = act(cell)((r * h) @ wh.T + x_t @ wx.T + b)
    h = u * h + (1 - u) * c_t
    return h, c, h


@reference("LSTMCell", gates=["i", "f", "c", "o"], states=2)
def lstm_step(cell, G, x_t, h, c):
    i = sig(lin(G["i"], x_t, h))
    f = sig(lin(G["f"], x_t, h))
    o = sig(lin(G["o"], x_t, h))
    c_in = act(cell)(lin(G["c"], x_t, h))
    c = f * c + i * c_in
    h = o * torch.tanh(c)
    return h, c, h


@reference("IntersectionCell", gates=["y", "h", "gy", "gh"])
def intersection_step(cell, G, x_t, h, c):
    y_in = torch.relu(lin(G["y"], x_t, h))
    h_in = torch.tanh(lin(G["h"], x_t, h))
    g_y = sig(lin(G["gy"], x_t, h))
    g_h = sig(lin(G["gh"], x_t, h))
    y = g_y * x_t + (1 - g_y) * y_in
    h = g_h * h + (1 - g_h) * h_in
    return h, c, y


# ---------------------------------------------------------------- cells without packed blocks
def f64(tensor):
    return tensor.detach().double()


def input_blocks(cell, names):
    """Per-block (W_x, b) of a cell whose blocks read x_t only: no recurrent weights, and no
    b_fg added (its step adds b_fg where its equations put it)."""
    n = cell.hidden_size
    return {
        name: (f64(cell.weight_ih[k * n : (k + 1) * n]), f64(cell.bias[k * n : (k + 1) * n]))
        for k, name in enumerate(names)
    }


@reference(
    "MinGRUCell", gates=["z", "h"], read=input_blocks, params=lambda i, n: 2 * (n * i + n) + n
)
def mingru_step(cell, G, x_t, h, c):
    (w_z, b_z), (w_h, b_h) = G["z"], G["h"]
    z = sig(x_t @ w_z.T + b_z - cell.gate_bias)  # b_fg > 0 keeps the state: 1 - z grows
    h_cand = x_t @ w_h.T + b_h
    h = (1 - z) * h + z * h_cand
    return h, c, h


@reference(
    "MinLSTMCell", gates=["f", "i", "h"], read=input_blocks, params=lambda i, n: 3 * (n * i + n) + n
)
def minlstm_step(cell, G, x_t, h, c):
    (w_f, b_f), (w_i, b_i), (w_h, b_h) = G["f"], G["i"], G["h"]
    f = sig(x_t @ w_f.T + b_f + cell.gate_bias)
    i = sig(x_t @ w_i.T + b_i)
    h_cand = x_t @ w_h.T + b_h
    f_n, i_n = f / (f + i), i / (f + i)
    h = f_n * h + i_n * h_cand
    return h, c, h


def minimalrnn_params(cell, names):
    """The MinimalRNN's W_x, U_h, U_z, b_z and b_u (Chen 2017's names)."""
    b_z, b_u = f64(cell.bias).chunk(2)
    return {
        "W_x": f64(cell.weight_ih),
        "U_h": f64(cell.weight_hh),
        "U_z": f64(cell.weight_zh),
        "b_z": b_z,
        "b_u": b_u,
    }


@reference(
    "MinimalRNNCell",
    gates=["z", "u"],
    read=minimalrnn_params,
    params=lambda i, n: n * i + n + (n * n + n * n + n) + n,  # z: W_x, b_z; u: U_h, U_z, b_u; h_0
)
def minimalrnn_step(cell, P, x_t, h, c):
    z = act(cell)(x_t @ P["W_x"].T + P["b_z"])
    u = sig(h @ P["U_h"].T + z @ P["U_z"].T + P["b_u"] + cell.gate_bias)
    h = u * h + (1 - u) * z
    return h, c, h


def indrnn_params(cell, names):
    """The IndRNN's W, its recurrent vector u and b."""
    return {"W": f64(cell.weight_ih), "u": f64(cell.weight_hh), "b": f64(cell.bias)}


@reference("IndRNNCell", gates=["h"], read=indrnn_params, params=lambda i, n: n * i + n + n + n)
def indrnn_step(cell, P, x_t, h, c):
    h = act(cell)(x_t @ P["W"].T + P["u"] * h + P["b"])
    return h, c, h


# ---------------------------------------------------------------- complex-state cells
def complex_initial(cell, batch):
    """A complex initial state stored as [Re; Im] in ``initial_h`` [2N]."""
    re, im = cell.initial_h.detach().double().chunk(2)
    return torch.complex(re, im).expand(batch, -1), None


def dft_matrix(n):
    """The unitary DFT: F[j, k] = exp(-2 pi i j k / n) / sqrt(n)."""
    j = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(j, j) / n) / math.sqrt(n)


def reflection_matrix(v):
    """R = I - 2 v v^* / (v^* v)."""
    return torch.eye(len(v), dtype=v.dtype) - 2 * torch.outer(v, v.conj()) / (v.conj() @ v)


def urnn_dense(cell):
    """W = D3 R2 F^-1 D2 Pi R1 F D1 (Arjovsky et al. 2016) as one dense complex matrix."""
    theta = cell.theta.detach().double()
    D1, D2, D3 = (torch.diag(torch.exp(1j * t)) for t in theta)
    R1, R2 = (reflection_matrix(torch.complex(*v)) for v in cell.reflection.detach().double())
    F = dft_matrix(cell.hidden_size)
    Pi = torch.zeros(cell.hidden_size, cell.hidden_size, dtype=torch.complex128)
    Pi[torch.arange(cell.hidden_size), cell.permutation] = 1  # (Pi h)_j = h_perm[j]
    return D3 @ R2 @ torch.linalg.inv(F) @ D2 @ Pi @ R1 @ F @ D1


def urnn_matrices(cell):
    """(the cell's structured product applied to the basis vectors, the dense W)."""
    eye = torch.eye(cell.hidden_size, dtype=torch.complex128)
    return cell.unitary(eye).detach().T, urnn_dense(cell)  # row j of unitary(I) is W e_j


@reference(
    "URNNCell",
    gates=[],
    initial=complex_initial,
    params=lambda i, n: 2 * n * i + 3 * n + 4 * n + n + 2 * n,  # V, theta, v_1 v_2, b, h_0
    matrix=urnn_matrices,
)
def urnn_step(cell, G, x_t, h, c):
    n = cell.hidden_size
    w_ih = cell.weight_ih.detach().double()
    V = torch.complex(w_ih[:n], w_ih[n:])
    b = cell.bias.detach().double()
    z = h @ urnn_dense(cell).T + x_t.to(torch.complex128) @ V.T  # W h + V x, rows
    h = torch.relu(z.abs() + b) * z / z.abs()  # modReLU
    return h, c, torch.cat((h.real, h.imag), -1)


def lru_params(i, n, block="glu"):
    """B, C, D, nu theta gamma, x_0; the block: LayerNorm s and beta, GLU W_1 b_1 W_2 b_2."""
    layer = 2 * n * i + 2 * i * n + i + 3 * n + 2 * n
    return layer + (2 * i + 2 * (i * i + i) if block == "glu" else 0)


def gelu_tanh(g):
    """GELU, tanh form (jax.nn.gelu default): 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))."""
    return 0.5 * g * (1 + torch.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))


@reference("LRUCell", gates=[], initial=complex_initial, params=lru_params)
def lru_step(cell, G, u_t, x, c):
    n, p = cell.hidden_size, lambda t: t.detach().double()
    v = u_t
    if cell.block == "glu":  # LayerNorm: biased variance over the features, epsilon 1e-6
        mean = u_t.mean(-1, keepdim=True)
        var = ((u_t - mean) ** 2).mean(-1, keepdim=True)
        v = (u_t - mean) / torch.sqrt(var + 1e-6) * p(cell.norm_weight) + p(cell.norm_bias)
    nu, theta = p(cell.nu_log).exp(), p(cell.theta_log).exp()
    lam = torch.exp(-nu) * (torch.cos(theta) + 1j * torch.sin(theta))
    gamma = p(cell.gamma_log).exp()
    w_ih = p(cell.weight_ih)
    B = torch.complex(w_ih[:n], w_ih[n:])
    C = torch.complex(*p(cell.weight_hy))
    D = p(cell.skip)
    x = lam * x + gamma * (v.to(torch.complex128) @ B.T)
    y = (x @ C.T).real + D * v
    if cell.block == "glu":  # u + (W_1 g + b_1) * sigmoid(W_2 g + b_2), g = GELU(y)
        W1, W2 = p(cell.glu_weight).chunk(2)
        b1, b2 = p(cell.glu_bias).chunk(2)
        g = gelu_tanh(y)
        y = u_t + (g @ W1.T + b1) * sig(g @ W2.T + b2)
    return x, c, y


def reference_layer(cell, x):
    """x [T, B, I] float64 -> depth outputs [T, B, D], from the equations."""
    ref = reference_of(type_before_parametrizations(cell))  # cell.orthogonal subclasses it
    G = ref.read(cell, ref.gates)
    if ref.initial is not None:
        h, c = ref.initial(cell, x.shape[1])
    else:
        h = cell.initial_h.detach().double().expand(x.shape[1], -1)
        c = cell.initial_c.detach().double().expand(x.shape[1], -1) if ref.states == 2 else None
    ys = []
    for x_t in x:
        h, c, y = ref.step(cell, G, x_t, h, c)
        ys.append(y)
    return torch.stack(ys)
