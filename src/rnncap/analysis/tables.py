"""What every analysis shares: run rows, CSV tables and their columns, and how a cell is shown.

A cell is shown by its config name's entry in its class's ``display`` (label, colour) and
``display_rank`` (place in the paper's order), see ``rnncap.cells.base.RecurrentCell``. The class
is the ``_target_`` of ``<conf>/cell/<name>.yaml``, or of a config named in its ``defaults`` (IRNN's
config names ``rnn``). A name without an entry is shown in upper case, in a colour of matplotlib's
cycle, after the ranked cells: a new cell appears in the figures without a change in analysis/.
"""

from __future__ import annotations

import csv
import importlib
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
CONF_DIR = Path("conf")  # the Hydra config dir holding cell/<name>.yaml, relative to the cwd
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


def _option(entry: Any) -> str | None:
    """The cell option a ``defaults`` entry names (``rnn``, ``/cell/rnn``, ``{cell: rnn}``);
    None for another group's entry (``/schema/cell/base@_here_``)."""
    if isinstance(entry, dict):
        entry = next((v for v in entry.values() if isinstance(v, str)), None)
    if not isinstance(entry, str):
        return None
    entry = entry.split("@")[0]
    if entry.startswith("/"):
        return entry.removeprefix("/cell/") if entry.startswith("/cell/") else None
    return entry


def cell_target(name: str, conf_dir: Path = CONF_DIR, seen: tuple[str, ...] = ()) -> str | None:
    """The ``_target_`` of ``<conf_dir>/cell/<name>.yaml``: its own, or that of the configs its
    ``defaults`` name, in Hydra's order (``_self_`` last unless placed); None if there is none."""
    path = conf_dir / "cell" / f"{name}.yaml"
    if name in seen or not path.is_file():
        return None
    node = yaml.safe_load(path.read_text())
    if not isinstance(node, dict):
        return None
    defaults = list(node.get("defaults") or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    target = None
    for entry in defaults:
        if entry == "_self_":
            target = node.get("_target_") or target
        elif (option := _option(entry)) is not None:
            target = cell_target(option, conf_dir, (*seen, name)) or target
    return target


def _cell_class(target: str) -> type | None:
    module, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        log.warning("cell class %s not found (%s): shown by its config name", target, err)
        return None


def _fallback_color(name: str) -> str:
    """A colour of matplotlib's cycle that no built-in cell uses, the same for a name always."""
    import matplotlib

    from rnncap.cells import RecurrentCell

    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    used = {c for cls in RecurrentCell.__subclasses__() for _, c in cls.display.values()}
    free = [c for c in cycle if c not in used] or cycle
    return free[zlib.crc32(name.encode()) % len(free)]


@cache
def _display(name: str, conf_dir: Path) -> CellDisplay:
    target = cell_target(name, conf_dir)
    cls = _cell_class(target) if target else None
    label, color = getattr(cls, "display", {}).get(name, (name.upper(), None))
    rank = getattr(cls, "display_rank", {}).get(name, math.inf)
    return CellDisplay(label, color or _fallback_color(name), rank)


def cell_display(name: str, conf_dir: Path = CONF_DIR) -> CellDisplay:
    """How the cell config ``name`` is shown (label, colour, rank), read from its class."""
    return _display(str(name), Path(conf_dir).resolve())


def cell_sort_key(name: str, conf_dir: Path = CONF_DIR) -> tuple[float, str]:
    """Paper order (rnn, ugrnn, gru, lstm, +RNN, irnn), then unranked cells by name."""
    return (cell_display(name, conf_dir).rank, str(name))


def cell_label(name: str, conf_dir: Path = CONF_DIR) -> str:
    return cell_display(name, conf_dir).label


def cell_color(name: str, conf_dir: Path = CONF_DIR) -> str:
    return cell_display(name, conf_dir).color


def ordered_cells(rows: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[str]:
    """The distinct ``cell`` values of ``rows`` in display order."""
    return sorted({r["cell"] for r in rows}, key=lambda c: cell_sort_key(c, conf_dir))
