"""Orthogonal recurrent blocks during training (``cell.orthogonal=exp|cayley``).

A cell's packed recurrent weight [G*N, N] holds G blocks of N x N. ``BlockOrthogonal`` is a
parametrisation (``torch.nn.utils.parametrize``) that keeps every block orthogonal, applying
the map of ``torch.nn.utils.parametrizations.orthogonal`` to the [G, N, N] batch of blocks:

    exp:     W_k = B_k exp(A_k)                  expRNN (Lezcano-Casado & Martinez-Rubio 2019)
    cayley:  W_k = B_k (I + A_k/2)(I - A_k/2)^-1  the Cayley map of the NC-GRU idea
    A_k = X_k - X_k^T,  X_k = tril(original_k)    the skew-symmetric generator

B_k is the block's initial value (``recurrent_init``, orthogonalised by QR when it is not
orthogonal, so ``recurrent_scale`` drops out), a fixed buffer: PyTorch's trivialisation.
``original`` [G*N, N] starts at -I per block (A = 0, W = B); only its N(N-1)/2 entries below
the diagonal reach A (the diagonal cancels in X - X^T), so a block trains N(N-1)/2 degrees of
freedom, which ``degrees_of_freedom`` states for ``rnncap.core.stack.count_parameters``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

ORTHOGONAL_MAPS = {"exp": "matrix_exp", "cayley": "cayley"}  # cell.orthogonal -> torch's map


class BlockOrthogonal(nn.Module):
    """[G*N, N] <- G orthogonal N x N blocks, each B_k times the map of its generator."""

    def __init__(self, blocks: int, size: int, kind: str) -> None:
        super().__init__()
        if kind not in ORTHOGONAL_MAPS:
            raise ValueError(f"cell.orthogonal={kind!r}; choose one of null, exp, cayley")
        self.blocks, self.size = blocks, size
        holder = nn.Module()  # the map of PyTorch's orthogonal(), taken from a [G, N, N] tensor
        holder.weight = nn.Parameter(torch.eye(size).repeat(blocks, 1, 1))
        orthogonal(holder, "weight", orthogonal_map=ORTHOGONAL_MAPS[kind])
        self.orth = holder.parametrizations.weight[0]
        self.degrees_of_freedom = blocks * size * (size - 1) // 2

    def forward(self, original: Tensor) -> Tensor:
        return self.orth(original.view(self.blocks, self.size, self.size)).flatten(0, 1)

    @torch.no_grad()
    def right_inverse(self, weight: Tensor) -> Tensor:
        """Assigning W sets each B_k to W's block (orthogonalised) and the generators to 0."""
        blocks = weight.reshape(self.blocks, self.size, self.size)
        return self.orth.right_inverse(blocks).flatten(0, 1)
