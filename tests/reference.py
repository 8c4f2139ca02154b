"""Literal float64 implementations of the paper's equations, one time step per line group.

Written independently of ``rnncap.cells``: they read the packed parameters by gate name
(gate orders as documented in each cell's docstring) and apply the equations verbatim.
"""

from __future__ import annotations

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


def reference_layer(cell, x):
    """x [T, B, I] float64 -> depth outputs [T, B, N], from the equations."""
    name = type(cell).__name__
    s = act(cell)
    h = cell.initial_h.detach().double().expand(x.shape[1], -1)
    c = (
        cell.initial_c.detach().double().expand(x.shape[1], -1)
        if hasattr(cell, "initial_c")
        else None
    )
    ys = []
    for x_t in x:
        if name == "RNNCell":
            (g,) = gates(cell, ["h"]).values()
            h = s(lin(g, x_t, h))
            y = h
        elif name == "UGRNNCell":
            G = gates(cell, ["c", "g"])
            c_t = s(lin(G["c"], x_t, h))
            g_t = sig(lin(G["g"], x_t, h))
            h = g_t * h + (1 - g_t) * c_t
            y = h
        elif name == "GRUCell":
            G = gates(cell, ["r", "u", "c"])
            r = sig(lin(G["r"], x_t, h))
            u = sig(lin(G["u"], x_t, h))
            wx, wh, b = G["c"]
            c_t = s((r * h) @ wh.T + x_t @ wx.T + b)
            h = u * h + (1 - u) * c_t
            y = h
        elif name == "LSTMCell":
            G = gates(cell, ["i", "f", "c", "o"])
            i = sig(lin(G["i"], x_t, h))
            f = sig(lin(G["f"], x_t, h))
            o = sig(lin(G["o"], x_t, h))
            c_in = s(lin(G["c"], x_t, h))
            c = f * c + i * c_in
            h = o * torch.tanh(c)
            y = h
        elif name == "IntersectionCell":
            G = gates(cell, ["y", "h", "gy", "gh"])
            y_in = torch.relu(lin(G["y"], x_t, h))
            h_in = torch.tanh(lin(G["h"], x_t, h))
            g_y = sig(lin(G["gy"], x_t, h))
            g_h = sig(lin(G["gh"], x_t, h))
            y = g_y * x_t + (1 - g_y) * y_in
            h = g_h * h + (1 - g_h) * h_in
        else:
            raise AssertionError(name)
        ys.append(y)
    return torch.stack(ys)
