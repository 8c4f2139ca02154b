"""A stack of ``depth`` recurrent layers of one cell type with a linear readout.

    x [B, T, I] -> (projection to N, +RNN only) -> layer_1 .. layer_depth -> readout -> [B, T, O]

Every layer feeds its depth output (h_t, or the +RNN's y_t) to the next layer; the readout
reads the top layer's depth output at every step.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from rnncap.cells.base import RecurrentCell

CellFactory = Callable[..., RecurrentCell]


def cell_class(cell: CellFactory) -> type[RecurrentCell]:
    """The RecurrentCell subclass behind a class or a ``functools.partial`` of one."""
    return getattr(cell, "func", cell)


class RecurrentStack(nn.Module):
    """``depth`` layers of ``cell(input_size, hidden_size)`` and a linear readout."""

    def __init__(
        self, cell: CellFactory, depth: int, input_size: int, hidden_size: int, output_size: int
    ) -> None:
        super().__init__()
        self.depth, self.hidden_size = depth, hidden_size
        self.input_size, self.output_size = input_size, output_size
        needs_projection = cell_class(cell).needs_square_input
        self.projection = nn.Linear(input_size, hidden_size) if needs_projection else None
        first_in = hidden_size if needs_projection else input_size
        sizes = [first_in] + [hidden_size] * (depth - 1)
        self.layers = nn.ModuleList(cell(size, hidden_size) for size in sizes)
        self.readout = nn.Linear(hidden_size, output_size)

    @staticmethod
    def param_count(
        cell: CellFactory, depth: int, input_size: int, hidden_size: int, output_size: int
    ) -> int:
        """Every trainable parameter: all layers (weights, biases, learned initial states),
        the +RNN's input projection (I*N + N) and the readout (N*O + O)."""
        cls, n = cell_class(cell), hidden_size
        total = n * output_size + output_size
        if cls.needs_square_input:
            total += input_size * n + n
            first_in = n
        else:
            first_in = input_size
        total += cls.param_count(first_in, n)
        total += (depth - 1) * cls.param_count(n, n)
        return total

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, I] -> readout at every step [B, T, O]."""
        h = x.transpose(0, 1)  # [T, B, I]: time-major for the step loop
        if self.projection is not None:
            h = self.projection(h)
        for layer in self.layers:
            h = layer(h)
        return self.readout(h).transpose(0, 1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
