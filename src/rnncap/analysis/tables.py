"""What every analysis shares: run rows, CSV tables and their columns, and how a cell is shown.

A cell is shown as the ``display`` node (label, colour, rank: its place in the paper's order) of
its YAML, ``conf/cell/<name>.yaml``, says, read from the composed config that ``rnncap generate
cells`` writes (``results/configs/cell/<name>.yaml``: Hydra has resolved its defaults). A cell
without one is shown in upper case, in a colour of matplotlib's cycle, after the ranked cells: a
new cell appears in the figures without a change in analysis/.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import yaml

from rnncap.base.io import write_atomic

log = logging.getLogger(__name__)
Row = dict[str, Any]
# every cell's composed config, <name>.yaml (`rnncap generate cells`), relative to the cwd
CELL_CONFIGS = Path("results/configs/cell")
CONF_DIR = CELL_CONFIGS  # the name the analyses' ``conf_dir`` arguments default to
ALL_DEPTHS = "all"  # the depth column of a fit pooled over depths
MEMORY_SETTINGS = ("input_dim", "input_scale", "delay")

CAPACITY_COLUMNS = [
    "cell",
    "depth",
    "params",
    "hidden",
    "capacity",
    "bits_per_param",
    "best_samples",
    "best_accuracy",
    "runs",
    "diverged",
    "points",  # its capacity points (seeds) and their convergence: rnncap.analysis.convergence
    "compute",
    "wall_s",
    "doubling_gain",
    "convergence",
]
FIT_COLUMNS = [
    "cell",
    "depth",
    "sizes",
    "slope",
    "slope_lo",
    "slope_hi",
    "exponent",
    "mean_bits_per_param",
    "mean_lo",
    "mean_hi",
    "min_params",
    "max_params",
    "rising",
    "unknown",
]
MEMORY_COLUMNS = [
    "cell",
    "depth",
    *MEMORY_SETTINGS,
    "hidden",
    "params",
    "mse",
    "r2",
    "mc",
    "theory_mse",
    "runs",
    "diverged",
]
CURVE_FIELDS = ["study", "cell", "depth", "sampler", "trial", "status", "value", "median", "best"]
INFEASIBLE_COLUMNS = [
    "cell",
    "depth",
    "trials",
    "diverged",
    "pruned",
    "percent",
    "percent_low",
    "percent_high",
]


def read_runs(root: str | Path) -> list[Row]:
    """Every ``metrics.json`` under ``root``, with ``run`` = its directory relative to root."""
    root = Path(root)
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        run = json.loads(path.read_text())
        run["run"] = str(path.parent.relative_to(root))
        runs.append(run)
    return runs


def write_csv(rows: Sequence[Row], path: Path, columns: Sequence[str]) -> None:
    """Rows as CSV with a header (written even for no rows, so downstream readers work),
    atomically: a reader sees the old table or the whole new one."""

    def write(f: IO) -> None:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write)


def _parse(value: str) -> Any:
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_csv(path: Path) -> list[Row]:
    """A CSV written by ``write_csv``, numbers parsed back (ints, floats, NaN; '' -> None)."""
    with path.open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass(frozen=True)
class CellDisplay:
    label: str
    color: str  # hex
    rank: float  # place in the display order; math.inf for a cell without one


def _display_node(name: str, cells: Path) -> dict[str, Any]:
    """The ``display`` node of ``<cells>/<name>.yaml``, the cell's composed config; {} (and a
    warning) for a cell without one."""
    path = cells / f"{name}.yaml"
    node = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(node, dict):
        log.warning(
            "no composed cell config %s (`rnncap generate cells %s`): cell %s is shown by its name",
            path,
            cells,
            name,
        )
        return {}
    return node.get("display") or {}


def _fallback_color(name: str, cells: Path) -> str:
    """A colour of matplotlib's cycle that no configured cell uses, the same for a name always."""
    import matplotlib

    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    used = {_display_node(p.stem, cells).get("color") for p in cells.glob("*.yaml")}
    free = [c for c in cycle if c not in used] or cycle
    return free[zlib.crc32(name.encode()) % len(free)]


@cache
def _display(name: str, cells: Path) -> CellDisplay:
    node = _display_node(name, cells)
    rank = node.get("rank")
    return CellDisplay(
        node.get("label") or name.upper(),
        node.get("color") or _fallback_color(name, cells),
        math.inf if rank is None else rank,
    )


def cell_display(name: str, cells: Path = CELL_CONFIGS) -> CellDisplay:
    """How the cell config ``name`` is shown (label, colour, rank): the ``display`` of its
    composed config ``<cells>/<name>.yaml`` (``rnncap generate cells`` writes them)."""
    return _display(str(name), Path(cells).resolve())


def cell_sort_key(name: str, cells: Path = CELL_CONFIGS) -> tuple[float, str]:
    """Paper order (rnn, ugrnn, gru, lstm, +RNN, irnn), then unranked cells by name."""
    return (cell_display(name, cells).rank, str(name))


def cell_label(name: str, cells: Path = CELL_CONFIGS) -> str:
    return cell_display(name, cells).label


def cell_color(name: str, cells: Path = CELL_CONFIGS) -> str:
    return cell_display(name, cells).color


def ordered_cells(rows: Iterable[Row], cells: Path = CELL_CONFIGS) -> list[str]:
    """The distinct ``cell`` values of ``rows`` in display order."""
    return sorted({r["cell"] for r in rows}, key=lambda c: cell_sort_key(c, cells))
