"""The keys every cell takes (``conf/cell/<cell>.yaml`` holds only its differences)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from rnncap.base.fields import bounded, choice
from rnncap.cells.base import COMPILE_MODES


class RecurrentInit(str, Enum):
    orthogonal = "orthogonal"
    identity = "identity"
    xavier = "xavier"
    chain = "chain"  # Orhan & Pitkow 2020: recurrent_scale on the superdiagonal (N x N blocks)


@dataclass
class DisplayConfig:
    """How figures and tables show a cell option (``rnncap.analysis.tables``); not passed to
    the cell. A cell without a label is shown by its name in upper case, without a colour in
    one of matplotlib's cycle, without a rank after the ranked cells."""

    label: str | None = None
    color: str | None = None  # hex, e.g. "#1f77b4"; no two cells share one
    rank: float | None = None  # its place in the display order (the paper's order first)


@dataclass
class CellConfig:
    """Constructor arguments of ``RecurrentCell`` (after input and hidden size)."""

    _target_: str = MISSING
    name: str = MISSING  # the config option's name (irnn is the rnn class with another config)
    # s of the (candidate) state: tanh, relu, modrelu (sign(z) ReLU(|z| + b), b learned per
    # unit), or a cell's own (the uRNN's modrelu, the LRU's linear); the class says which
    nonlinearity: str = "tanh"
    gate_bias: float = 0.0  # b_fg inside the update/forget gate sigmoid (unused without gates)
    recurrent_init: RecurrentInit = RecurrentInit.orthogonal  # per N x N recurrent block
    recurrent_scale: float = bounded(1.0, ge=0)
    input_scale: float = bounded(1.0, gt=0)  # times the Xavier-uniform input weights
    bias_init: float = 0.0
    # the step loop: false, true (torch.compile), reduce-overhead, graphed (GPU); see the cells
    compile: Any = choice(False, *COMPILE_MODES)
    # keep every N x N recurrent block orthogonal while training: exp (expRNN) or cayley; the
    # block starts at recurrent_init (orthogonalised, so recurrent_scale drops out); params
    # counts N(N-1)/2 per block. rnn, irnn and gru take it (rnncap.cells.orthogonal)
    orthogonal: str | None = choice(None, None, "exp", "cayley")
    display: DisplayConfig = field(default_factory=DisplayConfig)
