"""Literal float64 implementations of the paper's equations, one time step per line group.

Written independently of ``rnncap.cells``: they read the packed parameters by gate name
(gate orders as documented in each cell's docstring) and apply the equations verbatim.
A new cell registers its step here with ``@reference("<CellClass>", gates=[...])``; the
contract test (tests/test_contract.py) asks for it. A cell whose parameters are not the packed
[G*N, I], [G*N, N], [G*N] blocks also gives ``read`` (its parameters by name, float64) and
``count`` (its parameter count, from its equations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

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
    count: Callable[[int, int], int] | None = None  # (I, N) -> parameters of one layer

    def param_count(self, input_size: int, hidden_size: int) -> int:
        """One layer's parameters: ``count`` where given, else G*(N*(I+N)+N) weights and
        biases (Collins et al. 2017) + the learned initial state(s)."""
        if self.count is not None:
            return self.count(input_size, hidden_size)
        n = hidden_size
        return len(self.gates) * (n * (input_size + n) + n) + self.states * n


REFERENCES: dict[str, Reference] = {}  # cell class name -> its reference


def reference(
    class_name: str,
    gates: list[str],
    states: int = 1,
    read: Callable = gates,
    count: Callable[[int, int], int] | None = None,
) -> Callable:
    """Register the decorated step as the float64 reference of the cell class ``class_name``."""

    def register(step: Callable) -> Callable:
        REFERENCES[class_name] = Reference(tuple(gates), step, states, read, count)
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
    "MinGRUCell", gates=["z", "h"], read=input_blocks, count=lambda i, n: 2 * (n * i + n) + n
)
def mingru_step(cell, G, x_t, h, c):
    (w_z, b_z), (w_h, b_h) = G["z"], G["h"]
    z = sig(x_t @ w_z.T + b_z - cell.gate_bias)  # b_fg > 0 keeps the state: 1 - z grows
    h_cand = x_t @ w_h.T + b_h
    h = (1 - z) * h + z * h_cand
    return h, c, h


@reference(
    "MinLSTMCell", gates=["f", "i", "h"], read=input_blocks, count=lambda i, n: 3 * (n * i + n) + n
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
    count=lambda i, n: n * i + n + (n * n + n * n + n) + n,  # z: W_x, b_z; u: U_h, U_z, b_u; h_0
)
def minimalrnn_step(cell, P, x_t, h, c):
    z = act(cell)(x_t @ P["W_x"].T + P["b_z"])
    u = sig(h @ P["U_h"].T + z @ P["U_z"].T + P["b_u"] + cell.gate_bias)
    h = u * h + (1 - u) * z
    return h, c, h


def indrnn_params(cell, names):
    """The IndRNN's W, its recurrent vector u and b."""
    return {"W": f64(cell.weight_ih), "u": f64(cell.weight_hh), "b": f64(cell.bias)}


@reference("IndRNNCell", gates=["h"], read=indrnn_params, count=lambda i, n: n * i + n + n + n)
def indrnn_step(cell, P, x_t, h, c):
    h = act(cell)(x_t @ P["W"].T + P["u"] * h + P["b"])
    return h, c, h


def reference_layer(cell, x):
    """x [T, B, I] float64 -> depth outputs [T, B, N], from the equations."""
    ref = reference_of(type(cell))
    G = ref.read(cell, ref.gates)
    h = cell.initial_h.detach().double().expand(x.shape[1], -1)
    c = cell.initial_c.detach().double().expand(x.shape[1], -1) if ref.states == 2 else None
    ys = []
    for x_t in x:
        h, c, y = ref.step(cell, G, x_t, h, c)
        ys.append(y)
    return torch.stack(ys)
