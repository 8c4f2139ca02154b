"""The tuner-curve figure of ``rnncap trainability`` (the paper's Figure 4): one panel per
depth; per study the best so far (solid) and the running median (dashed) of its feasible
objectives against tuner trial, with the final values' 95% bootstrap intervals as error bars
at the right end. A cell has one colour in every panel; when a cell has several studies at a
depth (two tuner runs, or two samplers) each of them gets its own marker and legend entry,
named by study."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnncap.analysis.output import write_png_atomic
from rnncap.analysis.tables import CONF_DIR, cell_display, cell_label, cell_sort_key

MARKERS = ("o", "^", "s", "D", "v", "P")  # studies of one cell at one depth, in name order


def series_labels(studies: Sequence[Any], conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """Study name -> legend label: the cell's label, with the study's name when its cell has
    more than one study at a depth (so that two studies of one cell stay apart)."""
    count: dict[tuple[str, int], int] = {}
    for s in studies:
        count[(s.cell, s.depth)] = count.get((s.cell, s.depth), 0) + 1
    return {
        s.name: cell_label(s.cell, conf_dir)
        + (f" ({s.name})" if count[(s.cell, s.depth)] > 1 else "")
        for s in studies
    }


def curve_limits(best_curves: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """A minimised loss's y range from the studies' best-so-far curves: from half the lowest
    best to ten times the highest first feasible value (a running median of one good and one
    wild trial would otherwise stretch the log axis over ten decades); None when empty."""
    firsts, lows = [], []
    for bests in best_curves:
        finite = [b for b in bests if math.isfinite(b) and b > 0]
        if finite:
            firsts.append(finite[0])
            lows.append(finite[-1])
    return (0.5 * min(lows), 10.0 * max(firsts)) if firsts else None


def plot_curves(
    studies: Sequence[Any],
    curves: dict[str, tuple[list[float], list[float]]],
    intervals: dict[str, dict],
    path: Path,
    conf_dir: Path = CONF_DIR,
) -> None:
    """Draw ``curves`` (study -> (medians, bests)) with ``intervals`` (study ->
    ``bootstrap_final``) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({s.depth for s in studies})
    labels = series_labels(studies, conf_dir)
    order = sorted(studies, key=lambda s: (cell_sort_key(s.cell, conf_dir), s.name))
    cells = list(dict.fromkeys(s.cell for s in order))
    color_of = {cell: cell_display(cell, conf_dir).color for cell in cells}  # as every figure
    marker_of: dict[str, str | None] = {}
    for s in order:  # a marker only where a cell has several studies at a depth
        twins = [t.name for t in order if (t.cell, t.depth) == (s.cell, s.depth)]
        marker_of[s.name] = MARKERS[twins.index(s.name) % len(MARKERS)] if len(twins) > 1 else None
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4.6 * len(depths), 3.6), squeeze=False, sharey=True
    )
    maximize = bool(studies) and studies[0].maximize
    limits = None if maximize else curve_limits([bests for _, bests in curves.values()])
    for ax, depth in zip(axes[0], depths, strict=True):
        for s in (s for s in order if s.depth == depth):
            medians, bests = curves[s.name]
            color, marker = color_of[s.cell], marker_of[s.name]
            trials = range(1, len(bests) + 1)
            ax.plot(trials, bests, color=color, marker=marker, ms=4, markevery=4)
            ax.plot(trials, medians, color=color, linestyle="--", linewidth=1)
            for key, shift in (("best", 0.6), ("median", 1.2)):
                entry = intervals[s.name][key]
                if entry is not None:
                    value, low, high = entry
                    x = len(bests) + shift
                    marker = "o" if key == "best" else "_"
                    ax.errorbar(x, value, yerr=[[value - low], [high - value]], color=color,
                                capsize=2, lw=1, marker=marker, ms=3)  # fmt: skip
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("tuner trial (bars: final value, 95% bootstrap)")
        if studies and not maximize:
            ax.set_yscale("log")
        if limits is not None:  # a median of two trials, one of them wild, leaves the axis
            ax.set_ylim(*limits)
        ax.grid(True, which="both", alpha=0.3)
    task = f" ({studies[0].task})" if studies and studies[0].task else ""
    axes[0][0].set_ylabel(f"evaluation {studies[0].objective if studies else 'objective'}{task}")
    handles = [plt.Line2D([], [], color=color_of[c]) for c in cells]
    names = [cell_label(c, conf_dir) for c in cells]
    for s in order:
        if marker_of[s.name] is not None:
            handles.append(plt.Line2D([], [], color=color_of[s.cell], marker=marker_of[s.name]))
            names.append(f"{labels[s.name]}, depth {s.depth}")
    handles += [plt.Line2D([], [], color="k"), plt.Line2D([], [], color="k", linestyle="--")]
    fig.legend(handles, [*names, "best so far", "median"], loc="center right", fontsize=8)
    width = max(len(n) for n in names)  # room on the right for the legend's longest name
    fig.tight_layout(
        rect=(0, 0, 1 - min(0.35, 0.02 + 0.012 * width * 3.6 / fig.get_figwidth() * 2), 1)
    )
    write_png_atomic(fig, path, dpi=120)
