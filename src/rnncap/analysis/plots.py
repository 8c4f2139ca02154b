"""Figures of the capacity analysis, as PNG files (Collins et al. 2017, Figures 1 and 2c).

- ``capacity_vs_params.png``: bits stored against parameters on log axes, one panel per depth,
  one line per cell, with lines of constant bits per parameter for reference (Figure 1); a
  size whose capacity is still rising is a hollow marker, a saturated one filled, one of
  unknown convergence a cross;
- ``bits_per_param.png``: per cell and depth, the mean of bits per parameter over sizes (the
  paper's Figure 1i) and the slope of capacity through the origin, with bootstrap intervals
  over sizes (none for a single size); hatched bars have sizes still rising;
- ``convergence.png``: each capacity point's best bits per parameter against the compute
  spent (member-sample-steps, log), one panel per depth, a colour per cell;
- ``memory_per_unit.png``: normalised reconstruction error against units per layer, one line
  per cell, against the theory line ``max(0, (d - N) / d)`` (Figure 2c).

    rnncap plot --tables results/capacity/report --out results/capacity/report

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
from matplotlib.legend_handler import HandlerTuple  # noqa: E402

from rnncap.analysis.capacity import theory_mse  # noqa: E402
from rnncap.analysis.convergence import RISING, SATURATED, SATURATION_GAIN, UNKNOWN  # noqa: E402
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
FIGURES = ("capacity_vs_params", "bits_per_param", "convergence", "memory_per_unit")
# how a size's convergence is drawn: filled, hollow ("none" face colour), a cross
STATUS_MARKERS = {
    SATURATED: {"marker": "o"},
    RISING: {"marker": "o", "mfc": "none"},
    UNKNOWN: {"marker": "x"},
}


def _layers(depth: int) -> str:
    return f"{depth} layer{'s' * (depth > 1)}"


def _status(row: Row) -> str:
    """A row's convergence verdict; tables from before the record: unknown."""
    return row.get("convergence") if row.get("convergence") in STATUS_MARKERS else UNKNOWN


def status_handles(statuses: set[str], saturation_gain: float) -> list[matplotlib.lines.Line2D]:
    """Legend keys of the convergence markers in use."""
    labels = {
        SATURATED: f"saturated (last doubling of compute: < {saturation_gain:g} bits/param)",
        RISING: "still rising (a looser lower bound)",
        UNKNOWN: "no convergence record",
    }
    return [
        matplotlib.lines.Line2D(
            [], [], color="0.25", ls="none", ms=6, label=labels[s], **STATUS_MARKERS[s]
        )  # fmt: skip
        for s in (SATURATED, RISING, UNKNOWN)
        if s in statuses
    ]


def _key_below(fig: plt.Figure, handles: list, labels: list[str], columns: int) -> None:
    """A figure-wide legend under the panels, in ``columns`` columns, and the panels above it."""
    rows = -(-len(handles) // columns)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False,
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})  # fmt: skip
    fig.tight_layout(rect=(0, 0.02 + 0.05 * rows * 4.4 / fig.get_figheight(), 1, 1))


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def capacity_figure(
    table: Sequence[Row], conf_dir: Path = CONF_DIR, saturation_gain: float = SATURATION_GAIN
) -> plt.Figure:
    """Capacity (bits) against parameters, log-log, a panel per depth and a line per cell; the
    markers say each size's convergence (``STATUS_MARKERS``, keyed below the panels)."""
    rows = [r for r in table if r["capacity"] is not None and math.isfinite(r["capacity"])]
    depths = sorted({r["depth"] for r in rows}) or [1]
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4.2 * len(depths), 4.4), squeeze=False, sharex=True, sharey=True
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
            ax.plot([r["params"] for r in own], [r["capacity"] for r in own], "-",
                    color=shown.color, label=shown.label)  # fmt: skip
            for status, style in STATUS_MARKERS.items():
                marked = [r for r in own if _status(r) == status]
                if marked:
                    ax.plot([r["params"] for r in marked], [r["capacity"] for r in marked],
                            ls="none", color=shown.color, ms=6, mew=1.3,
                            label=f"_{shown.label} {status}", **style)  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="number of parameters", title=_layers(depth))
        # a range of less than a decade gets labelled minor ticks that overlap: plain numbers
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_ylabel("capacity (bits)")
    fig.suptitle("Capacity (max of bits over trials, b and seeds) against parameters", fontsize=11)
    handles = status_handles({_status(r) for r in rows}, saturation_gain)
    columns = len(handles) if len(depths) > 1 else 1
    _key_below(fig, handles, [h.get_label() for h in handles], columns)
    return fig


HEADLINES = (  # (column, interval columns, panel title)
    ("mean_bits_per_param", "mean_lo", "mean_hi", "mean of bits/param over sizes (Figure 1i)"),
    ("slope", "slope_lo", "slope_hi", "slope of capacity against parameters"),
)


def _shade(color: str, shade: float) -> tuple[float, float, float]:
    return tuple(c * shade for c in matplotlib.colors.to_rgb(color))


def bits_per_param_figure(fits: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Per cell (groups) and depth (bars, darker with depth): the mean of bits per parameter
    over sizes and the slope, with bootstrap intervals over sizes; a fit on one size has no
    interval and draws none. Hatched: some sizes are still rising."""
    rows = [r for r in fits if r["depth"] != ALL_DEPTHS and math.isfinite(r["slope"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    if not rows:
        for ax in axes:
            _empty(ax, "capacity")
        return fig
    cells, depths = ordered_cells(rows, conf_dir), sorted({r["depth"] for r in rows})
    width = 0.8 / len(depths)
    shades = np.linspace(1.0, 0.55, len(depths))
    for ax, (value, lo, hi, title) in zip(axes, HEADLINES, strict=True):
        for j, depth in enumerate(depths):
            for i, cell in enumerate(cells):
                row = next((r for r in rows if r["cell"] == cell and r["depth"] == depth), None)
                if row is None or row.get(value) is None or not math.isfinite(row[value]):
                    continue
                x = i - 0.4 + width * (j + 0.5)
                interval = [row.get(lo), row.get(hi)]
                err = None
                if all(v is not None and math.isfinite(v) for v in interval):
                    err = [[row[value] - interval[0]], [interval[1] - row[value]]]
                else:  # one size: no interval, and the bar says why
                    ax.annotate("1 size", (x, row[value]), xytext=(0, 2), fontsize=7,
                                textcoords="offset points", ha="center", va="bottom")  # fmt: skip
                ax.bar(x, row[value], width * 0.92, yerr=err, capsize=3,
                       color=_shade(cell_display(cell, conf_dir).color, shades[j]),
                       hatch="///" if row.get("rising") else None, edgecolor="k",
                       lw=0.5)  # fmt: skip
        ax.set_xticks(range(len(cells)), [cell_display(c, conf_dir).label for c in cells])
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("bits per parameter")
    colors = [cell_display(c, conf_dir).color for c in cells]
    depth_keys = [  # each depth's swatch: every cell's colour at that depth's shade
        tuple(matplotlib.patches.Patch(color=_shade(c, shade), lw=0) for c in colors)
        for shade in shades
    ]
    handles: list = [*depth_keys]
    labels = [_layers(d) for d in depths]
    handles.append(matplotlib.lines.Line2D([], [], color="k", marker="_", ms=8))
    labels.append("95% bootstrap interval over sizes")
    if any(r.get("rising") for r in rows):
        handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="k", hatch="///"))
        labels.append("some sizes still rising")
    fig.suptitle("Bits per parameter per cell and depth", fontsize=11)
    _key_below(fig, handles, labels, len(handles))
    return fig


def convergence_figure(
    curves: Sequence[Row],
    points: Sequence[Row] = (),
    conf_dir: Path = CONF_DIR,
    saturation_gain: float = SATURATION_GAIN,
) -> plt.Figure:
    """Best bits per parameter against compute (member-sample-steps, log), a step line per
    capacity point, a panel per depth, a colour per cell; each line ends in its point's
    convergence marker (``STATUS_MARKERS``)."""
    by_point: dict[tuple, list[Row]] = defaultdict(list)  # (cell, depth, point name) -> rows
    for row in curves:
        if row.get("bits_per_param") is not None and row.get("compute"):
            by_point[(row["cell"], row["depth"], row["point"])].append(row)
    verdicts = {(p["cell"], p["depth"], p["point"]): _status(p) for p in points}
    depths = sorted({rows[0]["depth"] for rows in by_point.values()}) or [1]
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4.6 * len(depths), 4.4), squeeze=False, sharey=True
    )
    if not by_point:
        _empty(axes[0, 0], "capacity runs with a convergence record:")
        return fig
    for ax, depth in zip(axes[0], depths, strict=True):
        own = {k: v for k, v in by_point.items() if v[0]["depth"] == depth}
        sizes = sorted({v[0]["params"] for v in own.values()})
        widths = dict(zip(sizes, np.linspace(0.8, 2.4, len(sizes)), strict=True))
        keys = []
        for cell in ordered_cells([v[0] for v in own.values()], conf_dir):
            shown = cell_display(cell, conf_dir)
            keys.append(matplotlib.lines.Line2D([], [], color=shown.color, label=shown.label))
            for name, rows in sorted(own.items(), key=lambda kv: kv[1][0]["params"]):
                if rows[0]["cell"] != cell:
                    continue
                label = f"_{shown.label} {name[2]}"
                x, y = [r["compute"] for r in rows], [r["bits_per_param"] for r in rows]
                ax.plot(x, y, drawstyle="steps-post", color=shown.color, alpha=0.85,
                        lw=widths[rows[0]["params"]], label=label)  # fmt: skip
                status = verdicts.get(name, UNKNOWN)
                ax.plot(x[-1:], y[-1:], ls="none", color=shown.color, ms=6, mew=1.3,
                        label=f"_{name[2]} {status}", **STATUS_MARKERS[status])  # fmt: skip
        ax.set(xscale="log", xlabel="compute (member-sample-steps)", title=_layers(depth))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(handles=keys, fontsize=8, loc="upper left")
    axes[0, 0].set_ylabel("best bits per parameter so far")
    fig.suptitle("Convergence: best bits per parameter against compute, a line per point "
                 "(thicker: more parameters)", fontsize=11)  # fmt: skip
    statuses = {verdicts.get(name, UNKNOWN) for name in by_point}
    handles = status_handles(statuses, saturation_gain)
    columns = len(handles) if len(depths) > 1 else 1
    _key_below(fig, handles, [h.get_label() for h in handles], columns)
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
        ax.axvline(dim, color="0.55", lw=0.8, ls="-.", label=f"N = {dim}: as many units as inputs")
        ax.set(xlabel="units per layer N", ylim=(-0.03, 1.05), xlim=(0, widths[-1]))
        ax.set_title(f"input dim {dim}, input scale {scale}, delay {delay}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("normalised reconstruction error")
    fig.suptitle("Per-unit capacity: reconstruction error against units", fontsize=11)
    fig.tight_layout()
    return fig


def plot_all(
    tables: Path, out: Path, conf_dir: Path = CONF_DIR, saturation_gain: float = SATURATION_GAIN
) -> list[Path]:
    """Read the fit stage's CSV tables and write the PNG figures (``FIGURES``) into ``out``;
    tables without convergence records (``convergence.csv``, ``points.csv``) draw them as
    unknown."""
    out.mkdir(parents=True, exist_ok=True)
    optional = {n: tables / f"{n}.csv" for n in ("convergence", "points")}
    curves, points = (read_csv(p) if p.is_file() else [] for p in optional.values())
    figures = {
        "capacity_vs_params": capacity_figure(
            read_csv(tables / "capacity.csv"), conf_dir, saturation_gain
        ),
        "bits_per_param": bits_per_param_figure(read_csv(tables / "fits.csv"), conf_dir),
        "convergence": convergence_figure(curves, points, conf_dir, saturation_gain),
        "memory_per_unit": memory_figure(read_csv(tables / "memory.csv"), conf_dir),
    }
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        write_png_atomic(fig, paths[-1])
    return paths
