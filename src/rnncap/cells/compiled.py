"""Running a cell's step loop compiled or CUDA-graphed (``cell.compile``, off by default).

``true`` runs the step loop with ``torch.compile(step)`` (one small graph per cell, compiled in
seconds: the loop stays in Python), which fuses each step's element-wise gate work into a few
kernels forward and backward; ``reduce-overhead`` adds CUDA graphs of the compiled step on a
GPU; ``graphed`` (GPU) compiles the step and captures the whole layer's forward and backward,
all T steps, as two CUDA graphs (``torch.cuda.make_graphed_callables``), one pair per input
shape, used in training mode with gradients on (the fixed-shape capacity job; evaluation runs
the compiled loop). It applies where the step loop runs (GRU, UGRNN, +RNN, and the others with
``use_native`` off), never inside a population's vmap. It needs a working ``torch.compile`` (a
C++ compiler on CPU, Triton on GPU).

A cell keeps one ``CompiledLoop``: its compiled step and graphed layers, built on first use and
never copied or pickled (a deepcopy or unpickled cell rebuilds them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

COMPILE_MODES = (False, True, "reduce-overhead", "graphed")

State = tuple[Tensor, ...]
StepFn = Callable[[Tensor, Tensor, State], tuple[State, Tensor]]


class LoopCell(Protocol):
    """What this module needs of a cell (an ``nn.Module``): its mode and its step loop."""

    compile_step: bool | str
    training: bool

    def loop_forward(self, x: Tensor) -> Tensor: ...


class CompiledLoop:
    """One cell's compiled step and CUDA-graphed layers, built on first use."""

    def __init__(self) -> None:
        self.compiled_step: StepFn | None = None
        self.graphs: dict[tuple, nn.Module] = {}  # compile="graphed": per input shape

    def __getstate__(self) -> dict:
        # deepcopy / pickle: compiled step and graphs are rebuilt on first use
        return {"compiled_step": None, "graphs": {}}

    def loop_step(self, step: StepFn, mode: bool | str, state: State) -> tuple[StepFn, State]:
        """The step function for the loop, and its initial state: ``step`` itself when
        ``mode`` is off, else ``torch.compile(step)`` (built once: ``dynamic=False``) with a
        contiguous state (one graph for every step)."""
        if not mode:
            return step, state
        if self.compiled_step is None:
            compile_mode = "reduce-overhead" if mode == "reduce-overhead" else None
            self.compiled_step = torch.compile(step, dynamic=False, mode=compile_mode)
        return self.compiled_step, tuple(s.contiguous() for s in state)

    def graphed_layer(self, cell: LoopCell, x: Tensor) -> nn.Module | None:
        """The layer's forward and backward as CUDA graphs for inputs shaped like ``x``, where
        ``compile="graphed"`` applies (CUDA, training, gradients on, no autocast); else None."""
        graphed = cell.compile_step == "graphed" and x.is_cuda and cell.training
        if not (graphed and torch.is_grad_enabled() and not torch.is_autocast_enabled("cuda")):
            return None
        key = (tuple(x.shape), x.dtype, x.device, x.requires_grad)
        if key not in self.graphs:
            self.graphs[key] = torch.cuda.make_graphed_callables(_LoopOf(cell), (x,))
        return self.graphs[key]


class _LoopOf(nn.Module):
    """``cell.loop_forward`` as a module whose parameters are the cell's (for CUDA graphs)."""

    def __init__(self, cell: LoopCell) -> None:
        super().__init__()
        assert isinstance(cell, nn.Module)
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        return self.cell.loop_forward(x)
