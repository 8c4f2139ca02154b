"""Counting generalisation of finished ``task=counting`` runs: accuracy against string length.

Every ``metrics.json`` under the runs folder carries what ran (``cell``, ``depth``, ``hidden``,
``params``), the task's ``train_length`` and ``test_lengths``, the per-step ``accuracy`` at the
training length, ``long_accuracy_<L>`` per test length and the ``saturation`` of the tanh and
sigmoid outputs on the longest strings (``rnncap.tasks.counting``). A model size is (cell,
depth, hidden), taken apart per task setting (``train_length``, ``max_count``); its value at
a length is the mean over its finished runs (seeds), with the lowest and highest beside it;
a diverged run (metrics null) counts in ``diverged`` only.

**Majority-class baseline** (``majority``, ``majority_class``): the per-step accuracy of always
answering the class most frequent over all steps of strings of that length, computed exactly
(not sampled) from the walk's law in ``rnncap.tasks.counting``: d_0 = 0; open at depth 0,
close when the depth equals the steps left, else a fair coin; the target after step t is
min(d_t, max_count). A cell below it at a length counts worse than a constant answer.

    rnncap counting --runs results/runs/counting --out results/counting

writes ``long_accuracy.csv`` (one row per size and length, the training length included),
``counting.csv`` (one row per size: accuracy at the training length, at the longest length,
the saturation, the majority-class baseline at the longest), ``long_accuracy.png``
(accuracy against length, log axis, a panel per width, a line per cell, the baseline dashed)
and ``summary.json`` (DVC metrics per cell and size).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
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

TASK = "counting"
SIZE = ("cell", "depth", "hidden", "train_length", "max_count")  # a size in one setting
LONG = re.compile(r"long_accuracy_(\d+)$")
CURVE_COLUMNS = [
    *SIZE,
    "params",
    "length",
    "accuracy",
    "accuracy_min",
    "accuracy_max",
    "majority",
    "majority_class",
    "runs",
    "diverged",
]
COUNTING_COLUMNS = [
    *SIZE,
    "params",
    "accuracy",
    "longest",
    "long_accuracy",
    "long_majority",
    "saturation",
    "runs",
    "diverged",
]


def class_shares(length: int, max_count: int) -> np.ndarray:
    """The share of the ``length`` steps of a random string at each capped depth 0..max_count,
    exact: the law of the depth after each step, stepped forward (module doc)."""
    law = np.zeros(length + 2)  # P(depth = k) before the step
    law[0] = 1.0
    shares = np.zeros(max_count + 1)
    for t in range(length):
        left = length - t  # steps left, this one included
        depth = np.arange(len(law))
        forced_close = depth >= left
        up = np.where(depth == 0, 1.0, np.where(forced_close, 0.0, 0.5)) * law
        down = law - up
        law = np.zeros_like(law)
        law[1:] += up[:-1]
        law[:-1] += down[1:]
        capped = np.minimum(depth, max_count)
        np.add.at(shares, capped, law)
    return shares / length


def majority_baseline(length: int, max_count: int) -> tuple[int, float]:
    """(class, per-step accuracy) of always answering the most frequent capped depth at
    strings of ``length`` steps."""
    shares = class_shares(length, max_count)
    top = int(np.argmax(shares))
    return top, float(shares[top])


def length_accuracies(run: Row) -> dict[int, float]:
    """Length -> per-step accuracy of one run: its training length's ``accuracy`` and each
    ``long_accuracy_<L>``; empty for a run without results (diverged)."""
    if run.get("accuracy") is None:
        return {}
    values = {int(run["train_length"]): float(run["accuracy"])}
    for key, value in run.items():
        if (match := LONG.match(key)) and value is not None:
            values[int(match.group(1))] = float(value)
    return values


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _size_groups(runs: Iterable[Row], conf_dir: Path) -> list[tuple[tuple, list[Row]]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for run in runs:
        groups[tuple(run[k] for k in SIZE)].append(run)
    key = lambda kv: (cell_sort_key(kv[0][0], conf_dir), *kv[0][1:])  # noqa: E731
    return sorted(groups.items(), key=key)


def curve_table(runs: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[Row]:
    """One row per (size, length): mean, lowest and highest accuracy over its runs."""
    rows = []
    for size, group in _size_groups(runs, conf_dir):
        per_run = [length_accuracies(r) for r in group]
        for length in sorted(set().union(*per_run)):
            values = [acc[length] for acc in per_run if length in acc]
            top, majority = majority_baseline(length, size[SIZE.index("max_count")])
            rows.append(
                dict(zip(SIZE, size, strict=True))
                | {
                    "params": group[0]["params"],
                    "length": length,
                    "accuracy": _mean(values),
                    "accuracy_min": min(values),
                    "accuracy_max": max(values),
                    "majority": majority,
                    "majority_class": top,
                    "runs": len(values),
                    "diverged": sum(r.get("status") == "diverged" for r in group),
                }
            )
    return rows


def counting_table(runs: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[Row]:
    """One row per size: mean accuracy at the training length and at the longest test length
    (the longest any run of the size was tested at), mean saturation (None if no run has one)."""
    rows = []
    for size, group in _size_groups(runs, conf_dir):
        per_run = [length_accuracies(r) for r in group]
        longest = max(max(r.get("test_lengths") or [r["train_length"]]) for r in group)
        saturation = [r["saturation"] for r in group if r.get("saturation") is not None]
        rows.append(
            dict(zip(SIZE, size, strict=True))
            | {
                "params": group[0]["params"],
                "accuracy": _mean([r["accuracy"] for r in group if r.get("accuracy") is not None]),
                "longest": longest,
                "long_accuracy": _mean([acc[longest] for acc in per_run if longest in acc]),
                "long_majority": majority_baseline(longest, size[SIZE.index("max_count")])[1],
                "saturation": _mean(saturation),
                "runs": len(group),
                "diverged": sum(r.get("status") == "diverged" for r in group),
            }
        )
    return rows


def summary(table: Sequence[Row]) -> dict[str, Any]:
    """DVC metrics: per cell and size (``d<depth>_n<hidden>``) the accuracy at the training
    length, at the longest length (and which), the majority-class baseline there and the
    saturation; with
    ``_L<train_length>_C<max_count>`` after the size when the runs' settings differ."""
    settings = len({(r["train_length"], r["max_count"]) for r in table}) > 1
    cells: dict[str, dict[str, Any]] = {}
    for row in table:
        keys = ("accuracy", "longest", "long_accuracy", "long_majority", "saturation")
        size = f"d{row['depth']}_n{row['hidden']}"
        size += f"_L{row['train_length']}_C{row['max_count']}" if settings else ""
        cells.setdefault(row["cell"], {})[size] = {
            k: None if isinstance(row[k], float) and not math.isfinite(row[k]) else row[k]
            for k in keys
        }
    return {"cells": cells}


def counting_figure(curves: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Per-step accuracy against string length (log axis), a panel per width, a line per
    (cell, depth, setting) with its range over seeds shaded, the training length dotted and
    the majority-class baseline dashed (black)."""
    widths = sorted({r["hidden"] for r in curves})
    fig, axes = plt.subplots(1, len(widths), figsize=(4.8 * len(widths) + 1.8, 4.2), squeeze=False,
                             sharey=True)  # fmt: skip
    depths = {r["depth"] for r in curves}
    settings = len({(r["train_length"], r["max_count"]) for r in curves}) > 1
    for ax, width in zip(axes[0], widths, strict=True):
        rows = [r for r in curves if r["hidden"] == width]
        lines: dict[tuple, list[Row]] = defaultdict(list)
        for row in rows:
            lines[(row["cell"], row["depth"], row["train_length"], row["max_count"])].append(row)
        for train_length in sorted({r["train_length"] for r in rows}):
            ax.axvline(train_length, color="0.5", ls=":", lw=1,
                       label=f"training length {train_length}")  # fmt: skip
        for cap in sorted({r["max_count"] for r in rows}):  # one constant answer per length
            base = sorted({(r["length"], r["majority"]) for r in rows if r["max_count"] == cap})
            label = "always the most frequent class" + (f", cap {cap}" if settings else "")
            ax.plot(*zip(*base, strict=True), color="k", ls="--", lw=1.2,
                    label=label)  # fmt: skip
        order = sorted(lines, key=lambda k: (cell_sort_key(k[0], conf_dir), *k[1:]))
        for key in order:
            (cell, depth, train_length, cap), own = (
                key,
                sorted(lines[key], key=lambda r: r["length"]),
            )
            shown = cell_display(cell, conf_dir)
            layers = f" ({depth} layer{'s' * (depth > 1)})" if depths != {1} else ""
            layers += f", trained at {train_length}, cap {cap}" if settings else ""
            xs = [r["length"] for r in own]
            ax.plot(xs, [r["accuracy"] for r in own], "o-", color=shown.color, ms=4,
                    label=shown.label + layers)  # fmt: skip
            ax.fill_between(xs, [r["accuracy_min"] for r in own],
                            [r["accuracy_max"] for r in own], color=shown.color,
                            alpha=0.12, lw=0)  # fmt: skip
        ax.set(xscale="log", xlabel="string length (steps)", ylim=(0, 1.03))
        ax.set_xticks(sorted({r["length"] for r in rows}))  # the lengths tested, labelled
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(f"{width} units per layer", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("per-step accuracy (capped depth)")
    legend = {}  # label -> handle, over every panel (a cell may be in one panel only)
    for ax in axes[0]:
        legend |= dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(legend.values(), legend.keys(), fontsize=8, loc="center right")
    fig.suptitle("Counting (Dyck-1 depth): trained short, tested long; mean over seeds, "
                 "range shaded", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.83, 1))  # the legend on the right
    return fig


def analyse(runs_dir: Path, out: Path, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """Read the runs, write long_accuracy.csv, counting.csv, long_accuracy.png, summary.json.
    Raises ``NoRuns`` (before writing anything) when no finished counting run is there."""
    runs = task_runs(runs_dir, TASK)
    curves, table = curve_table(runs, conf_dir), counting_table(runs, conf_dir)
    result = summary(table)
    figure = counting_figure(curves, conf_dir)
    write_csv(curves, out / "long_accuracy.csv", CURVE_COLUMNS)
    write_csv(table, out / "counting.csv", COUNTING_COLUMNS)
    write_png_atomic(figure, out / "long_accuracy.png")
    write_json_atomic(out / "summary.json", result)
    return {"runs": len(runs), "table": table, "curves": curves, "summary": result}
