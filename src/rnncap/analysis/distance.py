"""Memorisation distance of finished ``task=distance`` runs: how far back a cell recalls.

Every ``metrics.json`` under the runs folder carries what ran (``cell``, ``depth``,
``hidden``, ``params``) and the task's settings (``symbols``, ``length``, ``delay``) next to its
``accuracy``, so the run's ``.hydra`` config is not needed. A model size is (cell, depth,
hidden), taken apart per task setting (``symbols``, ``length``); its accuracy at a delay is
the best over that delay's runs (seeds), a run that diverged or has no accuracy counting as
failed.

**Max distance** at a threshold t: the largest tested delay d such that every tested delay
<= d reaches accuracy >= t (0 when the smallest fails). A size that fails a delay but passes a
larger one keeps the smaller max distance: recall that comes and goes with the delay is a
training accident, not memory; ``largest_passed`` records the largest passing delay anyway.
``censored`` marks a size that passed every tested delay (its true max distance may be more).

**Bound** (``unit_bound``): d <= N, N = hidden x depth, the units of the network. Recall
across a delay is held in the state, not in the weights: to recall the symbol ``d`` steps back
at every step the state must hold the last d symbols, each an independent uniform draw. The
paper measures about one real number stored per unit (its per-unit memory task: N units
recover min(N, n_in) of n_in i.i.d. inputs), and the linear memory capacity of an N-unit
network (Jaeger 2001: the summed squared correlation with the inputs d steps back, over all d)
is at most N; so holding one symbol per real number, a network holds at most N of them.
``per_unit`` = max distance / N is the share of that line a size reaches (1 = on it). No
parameter count enters: the weights set how well the state is used, not how much it holds.

    rnncap distance --runs results/runs/distance --out results/distance [--threshold 0.9]

writes ``max_distance.csv`` (one row per size), ``accuracy.csv`` (one row per size and
delay), ``max_distance.png`` and ``summary.json`` (DVC metrics: per cell its largest max
distance and the value per size).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402

from rnncap.analysis.output import write_png_atomic  # noqa: E402
from rnncap.analysis.tables import CONF_DIR, Row, cell_display, cell_sort_key, write_csv  # noqa: E402
from rnncap.analysis.task_runs import task_runs  # noqa: E402
from rnncap.base.io import write_json_atomic  # noqa: E402

TASK = "distance"
THRESHOLD = 0.9  # default accuracy a delay must reach to count as recalled
DODGE = 0.08  # units between neighbouring cells' points in the figure
SIZE = ("cell", "depth", "hidden", "symbols", "length")  # a model size in one task setting
ACCURACY_COLUMNS = [*SIZE, "params", "delay", "accuracy", "runs", "diverged"]
MAX_DISTANCE_COLUMNS = [
    *SIZE,
    "units",
    "params",
    "threshold",
    "delays",
    "max_distance",
    "largest_passed",
    "censored",
    "unit_bound",
    "per_unit",
]


def max_distance(accuracies: Mapping[int, float | None], threshold: float) -> int:
    """The largest delay d with every tested delay <= d at accuracy >= ``threshold``; 0 if
    the smallest fails (None = no finished run = failed)."""
    best = 0
    for delay in sorted(accuracies):
        accuracy = accuracies[delay]
        if accuracy is None or not accuracy >= threshold:
            break
        best = delay
    return best


def accuracy_table(runs: Iterable[Row]) -> list[Row]:
    """One row per (size, delay): the best accuracy over its runs (None if none measured)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for run in runs:
        groups[(*(run[k] for k in SIZE), run["delay"])].append(run)
    rows = []
    for (*size, delay), group in groups.items():
        scores = [r["accuracy"] for r in group if r.get("accuracy") is not None]
        scores = [a for a in scores if math.isfinite(a)]
        rows.append(
            dict(zip(SIZE, size, strict=True))
            | {
                "params": group[0]["params"],
                "delay": delay,
                "accuracy": max(scores, default=None),
                "runs": len(group),
                "diverged": sum(r.get("status") == "diverged" for r in group),
            }
        )
    return rows


def distance_table(accuracy: Sequence[Row], threshold: float, conf_dir: Path = CONF_DIR):
    """One row per size: max distance, largest passing delay, the bound d <= N and the share
    of it reached."""
    sizes: dict[tuple, list[Row]] = defaultdict(list)
    for row in accuracy:
        sizes[tuple(row[k] for k in SIZE)].append(row)
    rows = []
    for size, group in sizes.items():
        by_delay = {r["delay"]: r["accuracy"] for r in group}
        passed = [d for d, a in by_delay.items() if a is not None and a >= threshold]
        first = group[0]
        units = first["depth"] * first["hidden"]
        best = max_distance(by_delay, threshold)
        rows.append(
            dict(zip(SIZE, size, strict=True))
            | {
                "units": units,
                "params": first["params"],
                "threshold": threshold,
                "delays": ";".join(map(str, sorted(by_delay))),
                "max_distance": best,
                "largest_passed": max(passed, default=0),
                "censored": best == max(by_delay),
                "unit_bound": units,
                "per_unit": best / units,
            }
        )
    return sorted(rows, key=lambda r: size_order(r, conf_dir))


def size_order(row: Row, conf_dir: Path = CONF_DIR) -> tuple:
    """Display order of sizes: the paper's cell order, then depth, width and settings."""
    return (cell_sort_key(row["cell"], conf_dir), *(row[k] for k in SIZE[1:]))


def summary(table: Sequence[Row], threshold: float) -> dict[str, Any]:
    """DVC metrics: per cell its largest max distance over sizes and the value per size
    (``d<depth>_n<hidden>``, with ``_K<symbols>_T<length>`` when settings differ)."""
    settings = len({(r["symbols"], r["length"]) for r in table}) > 1
    cells: dict[str, dict[str, Any]] = {}
    for row in table:
        cell = cells.setdefault(row["cell"], {"max_distance": 0})
        key = f"d{row['depth']}_n{row['hidden']}"
        key += f"_K{row['symbols']}_T{row['length']}" if settings else ""
        cell[key] = row["max_distance"]
        cell["max_distance"] = max(cell["max_distance"], row["max_distance"])
    return {"threshold": threshold, "cells": cells}


def _label(row: Row, conf_dir: Path, depths: set[int], settings: int) -> str:
    """The cell's label, with its layers when the table has a depth other than 1 and its
    task setting when it has several."""
    label = cell_display(row["cell"], conf_dir).label
    depth = row["depth"]
    label += f" ({depth} layer{'s' * (depth > 1)})" if depths != {1} else ""
    return label + (f", K={row['symbols']}, T={row['length']}" if settings > 1 else "")


def distance_figure(table: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Max distance against units, with the per-unit line d = N (one real number per unit
    holds one symbol), and the share of that line reached (d / N) against units; a line per
    cell, depth and setting."""
    fig, (by_units, share) = plt.subplots(1, 2, figsize=(12, 4.4))
    depths = {r["depth"] for r in table}
    top = max(max(int(d) for d in r["delays"].split(";")) for r in table)
    units = np.array(sorted({r["units"] for r in table}))
    grid_n = np.arange(0, units.max() * 1.25 + 1)
    by_units.plot(grid_n, grid_n, "k--", lw=1.2, label="d = N: one symbol per unit")
    by_units.axhline(top, color="0.6", ls=":", lw=1, label=f"longest delay tested ({top})")
    share.axhline(1.0, color="k", ls="--", lw=1.2, label="d / N = 1: the per-unit line")
    share.plot(grid_n[1:], np.minimum(top / grid_n[1:], 1.0), color="0.6", ls=":", lw=1,
               label=f"longest delay tested / N ({top} / N)")  # fmt: skip
    groups: dict[tuple, list[Row]] = defaultdict(list)  # a line per cell, depth and setting
    for row in table:
        groups[(row["cell"], row["depth"], row["symbols"], row["length"])].append(row)
    order = sorted(groups, key=lambda k: (cell_sort_key(k[0], conf_dir), *k[1:]))
    settings = len({k[2:] for k in order})
    for i, key in enumerate(order):
        rows = sorted(groups[key], key=lambda r: r["units"])
        dodge = DODGE * (i - (len(order) - 1) / 2)  # sideways, so that equal values all show
        shown, marker = cell_display(key[0], conf_dir), "o" if key[1] == 1 else "s"
        style = {"color": shown.color, "marker": marker, "ms": 5, "alpha": 0.85}
        label = _label(rows[0], conf_dir, depths, settings)
        xs = [r["units"] + dodge for r in rows]
        by_units.plot(xs, [r["max_distance"] for r in rows], "-", label=label, **style)
        share.plot(xs, [r["max_distance"] / r["units"] for r in rows], "-", label=label, **style)
    spread = f"{DODGE * (len(order) - 1) / 2:.2g}"
    xlabel = f"units N (hidden x layers; cells shifted by up to ±{spread})"
    by_units.set(xlabel=xlabel, ylabel="max distance d (delays recalled)",
                 xlim=(0, grid_n[-1]), ylim=(0, max(top, units.max()) * 1.25))  # fmt: skip
    highest = max([1.0, *(r["max_distance"] / r["units"] for r in table)])
    share.set(xlabel=xlabel, ylabel="d / N (share of the per-unit line)",
              xlim=(0, grid_n[-1]), ylim=(0, highest * 1.15))  # fmt: skip
    threshold = table[0]["threshold"]
    by_units.set_title(f"max distance (accuracy >= {threshold:g}) against units", fontsize=10)
    share.set_title("what the state holds of what it could: d / N", fontsize=10)
    for ax in (by_units, share):
        ax.grid(True, alpha=0.3)
    by_units.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    cells = len(order)  # each panel's last lines are the cells'; its bounds come before them
    for ax in (by_units, share):
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:-cells], labels[:-cells], fontsize=7, loc="upper left")
    handles, labels = by_units.get_legend_handles_labels()
    fig.legend(handles[-cells:], labels[-cells:], fontsize=8, loc="center right")
    fig.suptitle("Memorisation distance: the longest delay recalled at every shorter delay, "
                 "against the state's N real numbers", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.85, 1))  # the cells' legend on the right
    return fig


def analyse(
    runs_dir: Path, out: Path, threshold: float = THRESHOLD, conf_dir: Path = CONF_DIR
) -> dict[str, Any]:
    """Read the runs, write max_distance.csv, accuracy.csv, max_distance.png, summary.json.
    Raises ``NoRuns`` (before writing anything) when no finished distance run is there."""
    runs = task_runs(runs_dir, TASK)
    accuracy = accuracy_table(runs)
    table = distance_table(accuracy, threshold, conf_dir)
    accuracy.sort(key=lambda r: (size_order(r, conf_dir), r["delay"]))
    result = summary(table, threshold)
    figure = distance_figure(table, conf_dir)
    write_csv(accuracy, out / "accuracy.csv", ACCURACY_COLUMNS)
    write_csv(table, out / "max_distance.csv", MAX_DISTANCE_COLUMNS)
    write_png_atomic(figure, out / "max_distance.png")
    write_json_atomic(out / "summary.json", result)
    return {"runs": len(runs), "table": table, "summary": result}
