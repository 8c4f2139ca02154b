"""A stack of ``depth`` recurrent layers of one cell type with a linear readout.

    x [B, T, I] -> (projection to N: the +RNN, the LRU block) -> layer_1 .. layer_depth
                -> readout -> [B, T, O]

Every layer feeds its depth output (h_t, the +RNN's y_t, the uRNN's [Re h_t, Im h_t], the
LRU's y_t) to the next layer; the readout reads the top layer's depth output at every step.
Each layer's input size is the depth output size of the layer below
(``RecurrentCell.layer_output_size``: N for most cells, 2N for the uRNN, the layer's own input
size for the LRU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from rnncap.cells.base import RecurrentCell

CellFactory = Callable[..., RecurrentCell]


def cell_class(cell: CellFactory) -> type[RecurrentCell]:
    """The RecurrentCell subclass behind a class or a ``functools.partial`` of one."""
    return getattr(cell, "func", cell)


def cell_options(cell: CellFactory) -> dict[str, Any]:
    """The constructor options bound in a ``functools.partial`` (none for a bare class)."""
    return dict(getattr(cell, "keywords", {}))


def layer_sizes(cls: type[RecurrentCell], depth: int, first_in: int, hidden: int) -> list[int]:
    """Input size of each of the ``depth`` layers, then of the readout."""
    sizes = [first_in]
    for _ in range(depth):
        sizes.append(cls.layer_output_size(sizes[-1], hidden))
    return sizes


class RecurrentStack(nn.Module):
    """``depth`` layers of ``cell(input_size, hidden_size)`` and a linear readout."""

    def __init__(
        self, cell: CellFactory, depth: int, input_size: int, hidden_size: int, output_size: int
    ) -> None:
        super().__init__()
        self.depth, self.hidden_size = depth, hidden_size
        self.input_size, self.output_size = input_size, output_size
        cls = cell_class(cell)
        needs_projection = cls.input_projection(**cell_options(cell))
        self.projection = nn.Linear(input_size, hidden_size) if needs_projection else None
        first_in = hidden_size if needs_projection else input_size
        *sizes, top = layer_sizes(cls, depth, first_in, hidden_size)
        self.layers = nn.ModuleList(cell(size, hidden_size) for size in sizes)
        self.readout = nn.Linear(top, output_size)

    @staticmethod
    def param_count(
        cell: CellFactory, depth: int, input_size: int, hidden_size: int, output_size: int
    ) -> int:
        """Every trainable degree of freedom, as ``count_parameters`` counts the built stack:
        all layers (``cls.param_count`` with the options bound in ``cell``: weights, biases,
        learned initial states, modReLU biases, N(N-1)/2 per orthogonal N x N block), the
        input projection where the cell asks for one (I*N + N: the +RNN, the LRU block) and
        the readout (D*O + O, D the top layer's depth output size)."""
        cls, n, options = cell_class(cell), hidden_size, cell_options(cell)
        projection = cls.input_projection(**options)
        first_in = n if projection else input_size
        *sizes, top = layer_sizes(cls, depth, first_in, n)
        total = top * output_size + output_size
        if projection:
            total += input_size * n + n
        return total + sum(cls.param_count(size, n, **options) for size in sizes)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, I] -> readout at every step [B, T, O]."""
        h = x.transpose(0, 1)  # [T, B, I]: time-major for the step loop
        if self.projection is not None:
            h = self.projection(h)
        for layer in self.layers:
            h = layer(h)
        return self.readout(h).transpose(0, 1)


def count_parameters(module: nn.Module) -> int:
    """Trainable degrees of freedom in ``module``: every trainable scalar, except that a tensor
    stored under a parametrisation that declares ``degrees_of_freedom`` counts those instead
    of its size (``cell.orthogonal``: N(N-1)/2 per N x N block, the free entries of the
    skew-symmetric generator, not the N^2 entries of the tensor that holds it)."""
    free = {}
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            for chain in sub.parametrizations.values():
                declared = [getattr(p, "degrees_of_freedom", None) for p in chain]
                if declared[0] is not None:  # the first map reads the stored tensor
                    free[id(chain.original)] = declared[0]
    return sum(free.get(id(p), p.numel()) for p in module.parameters() if p.requires_grad)
