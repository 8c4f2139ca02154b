"""Figures of the capacity analysis, as PNG files (Collins et al. 2017, Figures 1 and 2c).

- ``capacity_vs_params.png``: bits stored against parameters on log axes, one panel per depth,
  one line per cell, with lines of constant bits per parameter for reference (Figure 1);
- ``bits_per_param.png``: bits per parameter per cell and depth (the fitted slope) with its
  bootstrap confidence interval as error bars;
- ``memory_per_unit.png``: normalised reconstruction error against units per layer, one line
  per cell, against the theory line ``max(0, (d - N) / d)`` (Figure 2c).

    rnncap plot --tables results/capacity --out results/figures

Cells are drawn in their display order, label and colour (``rnncap.analysis.tables``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402

from rnncap.analysis.capacity import theory_mse  # noqa: E402
from rnncap.analysis.output import write_png_atomic  # noqa: E402
from rnncap.analysis.tables import (  # noqa: E402
    ALL_DEPTHS,
    CONF_DIR,
    MEMORY_SETTINGS,
    Row,
    cell_display,
    ordered_cells,
    read_csv,
)

REFERENCE_BITS = (1, 2, 5)  # dashed lines of constant bits per parameter; ~5 in the paper
FIGURES = ("capacity_vs_params", "bits_per_param", "memory_per_unit")


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def capacity_figure(table: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Capacity (bits) against parameters, log-log, a panel per depth and a line per cell."""
    rows = [r for r in table if r["capacity"] is not None and math.isfinite(r["capacity"])]
    depths = sorted({r["depth"] for r in rows}) or [1]
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4.2 * len(depths), 4), squeeze=False, sharex=True, sharey=True
    )
    if not rows:
        _empty(axes[0, 0], "capacity")
        return fig
    pmin, pmax = min(r["params"] for r in rows), max(r["params"] for r in rows)
    grid = np.geomspace(pmin / 1.5, pmax * 1.5, 50)
    for ax, depth in zip(axes[0], depths, strict=True):
        for bits in REFERENCE_BITS:
            ax.plot(grid, bits * grid, ls=":", lw=0.8, color="0.6")
            label = f"{bits} bit{'s' * (bits > 1)}/param"
            ax.annotate(label, (grid[-1], bits * grid[-1]), fontsize=7, color="0.45",
                        ha="right", va="top")  # fmt: skip
        at_depth = [r for r in rows if r["depth"] == depth]
        for cell in ordered_cells(at_depth, conf_dir):
            own = sorted((r for r in at_depth if r["cell"] == cell), key=lambda r: r["params"])
            shown = cell_display(cell, conf_dir)
            ax.plot([r["params"] for r in own], [r["capacity"] for r in own], "o-",
                    color=shown.color, label=shown.label, ms=5)  # fmt: skip
        title = f"{depth} layer" + ("s" if depth > 1 else "")
        ax.set(xscale="log", yscale="log", xlabel="number of parameters", title=title)
        # a range of less than a decade gets labelled minor ticks that overlap: plain numbers
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_ylabel("capacity (bits)")
    fig.suptitle("Capacity (max of bits over trials, b and seeds) against parameters", fontsize=11)
    fig.tight_layout()
    return fig


def bits_per_param_figure(fits: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Fitted bits per parameter per cell (groups) and depth (bars), bootstrap CI error bars."""
    rows = [r for r in fits if r["depth"] != ALL_DEPTHS and math.isfinite(r["slope"])]
    fig, ax = plt.subplots(figsize=(7, 4))
    if not rows:
        _empty(ax, "capacity")
        return fig
    cells, depths = ordered_cells(rows, conf_dir), sorted({r["depth"] for r in rows})
    width = 0.8 / len(depths)
    shades = np.linspace(1.0, 0.45, len(depths))
    for j, depth in enumerate(depths):
        for i, cell in enumerate(cells):
            row = next((r for r in rows if r["cell"] == cell and r["depth"] == depth), None)
            if row is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            err = [[row["slope"] - row["slope_lo"]], [row["slope_hi"] - row["slope"]]]
            color = matplotlib.colors.to_rgb(cell_display(cell, conf_dir).color)
            ax.bar(x, row["slope"], width * 0.92, yerr=err, capsize=3,
                   color=tuple(c * shades[j] for c in color), edgecolor="k", lw=0.5)  # fmt: skip
    ax.set_xticks(range(len(cells)), [cell_display(c, conf_dir).label for c in cells])
    ax.set_ylabel("bits per parameter")
    ax.set_title("Bits per parameter: slope of capacity against parameters", fontsize=10)
    depth_keys = [
        matplotlib.patches.Patch(color=str(0.75 * shade), label=f"{depth} layer{'s' * (depth > 1)}")
        for depth, shade in zip(depths, shades, strict=True)
    ]
    error = matplotlib.lines.Line2D([], [], color="k", marker="_", ms=8, label="95% bootstrap CI")
    ax.legend(handles=[*depth_keys, error], fontsize=8, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def memory_figure(memory: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Normalised error against units per layer, one panel per task setting, theory dashed."""
    panels: dict[tuple, list[Row]] = defaultdict(list)
    for row in memory:
        if row["mse"] is not None and math.isfinite(row["mse"]):
            panels[tuple(row[k] for k in MEMORY_SETTINGS)].append(row)
    keys = sorted(panels, key=lambda k: tuple(v or 0 for v in k)) or [None]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 4), squeeze=False)
    if not panels:
        _empty(axes[0, 0], "memory")
        return fig
    for ax, key in zip(axes[0], keys, strict=True):
        rows, (dim, scale, delay) = panels[key], key
        widths = np.arange(0, 1.1 * max(dim, *(r["hidden"] for r in rows)) + 1)
        theory = [theory_mse(int(n), dim) for n in widths]
        ax.plot(widths, theory, "k--", lw=1.2, label=f"theory max(0, ({dim}-N)/{dim})")
        styles = {d: s for d, s in zip(sorted({r["depth"] for r in rows}), "os^D")}  # noqa: B905
        for cell in ordered_cells(rows, conf_dir):
            shown = cell_display(cell, conf_dir)
            for depth, marker in styles.items():
                own = sorted((r for r in rows if (r["cell"], r["depth"]) == (cell, depth)),
                             key=lambda r: r["hidden"])  # fmt: skip
                if own:
                    layers = f" ({depth} layer{'s' * (depth > 1)})" if len(styles) > 1 else ""
                    label = shown.label + layers
                    ax.plot([r["hidden"] for r in own], [r["mse"] for r in own], marker + "-",
                            color=shown.color, label=label, ms=4, alpha=0.85)  # fmt: skip
        ax.axvline(dim, color="0.7", lw=0.8)
        ax.set(xlabel="units per layer N", ylim=(-0.03, 1.05), xlim=(0, widths[-1]))
        ax.set_title(f"input dim {dim}, input scale {scale}, delay {delay}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("normalised reconstruction error")
    fig.suptitle("Per-unit capacity: reconstruction error against units", fontsize=11)
    fig.tight_layout()
    return fig


def plot_all(tables: Path, out: Path, conf_dir: Path = CONF_DIR) -> list[Path]:
    """Read the fit stage's CSV tables and write the three PNG figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "capacity_vs_params": capacity_figure(read_csv(tables / "capacity.csv"), conf_dir),
        "bits_per_param": bits_per_param_figure(read_csv(tables / "fits.csv"), conf_dir),
        "memory_per_unit": memory_figure(read_csv(tables / "memory.csv"), conf_dir),
    }
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        write_png_atomic(fig, paths[-1])
    return paths
