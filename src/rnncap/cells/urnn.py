"""Unitary evolution RNN, uRNN (Arjovsky, Shah & Bengio 2016, arXiv 1511.06464, section 4).

Complex hidden state h_t in C^N, real input x_t in R^I:

    W   = D3 R2 F^-1 D2 Pi R1 F D1                   unitary, O(N) parameters
    D_j = diag(exp(i theta_j))                       theta_j in R^N
    R_k = I - 2 v_k v_k^* / ||v_k||^2                complex reflections, v_k in C^N
    F   = the unitary DFT (F^-1 = F^*), Pi = a fixed random permutation
    h_t = modReLU(W h_{t-1} + V x_t),                V = V_re + i V_im in C^{N x I}
    modReLU(z)_j = ReLU(|z_j| + b_j) z_j / |z_j|     b in R^N: the cell's one bias
    y_t = [Re h_t, Im h_t]                           depth output, 2N reals

The readout (or the next layer) reads y_t, so this layer's output is 2N wide. The paper's
output map U [Re h; Im h] + b_o is the stack's linear readout.

Parameters (real numbers, as ``params`` counts them), 2*N*I + 10*N per layer:

* ``weight_ih`` [2N, I]: [V_re; V_im] (block order [re, im]);
* ``theta`` [3, N]: the phases of D1, D2, D3;
* ``reflection`` [2, 2, N]: v_1, v_2 as [[Re v_1, Im v_1], [Re v_2, Im v_2]];
* ``bias`` [N]: the modReLU bias b (there is no bias before the modulus);
* ``initial_h`` [2N]: the learned initial state [Re h_0, Im h_0] (zero at first);
* buffer ``permutation`` [N]: (Pi h)_j = h_{permutation[j]}, drawn from a generator seeded
  by N alone, so every model of width N (every seed, every population member) has the same Pi.

Init: theta ~ U[-pi, pi] and Re v, Im v ~ U[-1, 1] (the usual uRNN draw; the authors' Theano
code draws both Glorot-uniform), V_re and V_im Xavier-uniform times ``input_scale``,
b = ``bias_init`` (0: modReLU starts as the identity). W is unitary by construction:
``recurrent_init`` has the one value ``orthogonal`` (W starts as the product of the random
factors, never a chosen matrix), ``recurrent_scale`` and ``gate_bias`` are not used, and
``nonlinearity`` is modReLU by definition. The step loop runs in complex arithmetic
(complex64, complex128 for a float64 cell).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnncap.cells.base import MODRELU, RecurrentCell, State, modrelu

PERMUTATION_SEED = 1511_06464  # Pi depends on N only: the paper's "fixed random permutation"


class URNNCell(RecurrentCell):
    """uRNN: h_t = modReLU(D3 R2 F^-1 D2 Pi R1 F D1 h_{t-1} + V x_t); depth output [Re, Im]."""

    num_gates = 2  # weight_ih's blocks: [V_re; V_im]
    allowed_nonlinearities = (MODRELU,)
    allowed_recurrent_inits = ("orthogonal",)  # a random unitary W, not a chosen matrix
    square_recurrent = False  # W is a structured unitary product, not free N x N blocks
    use_native = False  # no fused kernel computes it

    def make_parameters(self) -> None:
        n = self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * n, self.input_size))
        self.theta = nn.Parameter(torch.empty(3, n))
        self.reflection = nn.Parameter(torch.empty(2, 2, n))
        self.bias = nn.Parameter(torch.empty(n))
        self.initial_h = nn.Parameter(torch.zeros(2 * n))
        generator = torch.Generator().manual_seed(PERMUTATION_SEED + n)
        self.register_buffer("permutation", torch.randperm(n, generator=generator), False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in self.weight_ih.split(self.hidden_size, 0):
                nn.init.xavier_uniform_(w)
                w.mul_(self.input_scale)
            self.theta.uniform_(-math.pi, math.pi)
            self.reflection.uniform_(-1.0, 1.0)
            self.bias.fill_(self.bias_init)
            self.initial_h.zero_()

    @classmethod
    def param_count(cls, input_size: int, hidden_size: int, **_: object) -> int:
        """2*N*I (V) + 3N (phases) + 4N (two complex reflections) + N (b) + 2N (h_0)."""
        n = hidden_size
        return 2 * n * input_size + 10 * n

    @classmethod
    def layer_output_size(cls, input_size: int, hidden_size: int) -> int:
        return 2 * hidden_size  # [Re h, Im h]

    # ------------------------------------------------------------------ compute
    def initial_state(self, batch: int) -> State:
        re, im = self.initial_h.chunk(2)
        return (torch.complex(re, im).expand(batch, -1),)

    def project_inputs(self, x: Tensor) -> Tensor:
        """V x_t for all steps: [T, B, I] -> complex [T, B, N]."""
        re, im = (x @ self.weight_ih.t()).chunk(2, -1)
        return torch.complex(re, im)

    def unitary(self, h: Tensor) -> Tensor:
        """W h for each row of h [B, N]: the eight factors, right to left."""
        d1, d2, d3 = torch.polar(torch.ones_like(self.theta), self.theta)
        h = torch.fft.fft(d1 * h, norm="ortho")  # F D1 h
        h = d2 * self.reflect(h, 0)[..., self.permutation]  # D2 Pi R1
        h = torch.fft.ifft(h, norm="ortho")  # F^-1
        return d3 * self.reflect(h, 1)  # D3 R2

    def reflect(self, h: Tensor, k: int) -> Tensor:
        """R_k h = h - 2 v (v^* h) / (v^* v) for each row of h [B, N]."""
        v = torch.complex(*self.reflection[k])
        return h - (2 / v.abs().square().sum()) * (h @ v.conj()).unsqueeze(-1) * v

    def step(self, x_t: Tensor, xp_t: Tensor, state: State) -> tuple[State, Tensor]:
        (h,) = state
        h = modrelu(self.unitary(h) + xp_t, self.bias)
        return (h,), torch.cat((h.real, h.imag), -1)
