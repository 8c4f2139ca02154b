"""The figure of capacity under reduced precision (``precision.png``), from the fits of
``rnncap.analysis.rescore``, one column per depth (grids trained in different precisions
compare at the same depth):

- top: bits per parameter against the bits each weight is stored in (log2 axis: ternary
  1.58, int4, int8, 16-bit, fp32), one colour per cell; per-tensor formats joined by a line,
  per-row scales as hollow markers, fp16 as a cross; a grid trained in bf16-mixed dashed;
- middle: bits per weight bit, bits / (params x bits per weight), the scales left out;
- bottom: bits per stored bit, bits / (weight bits + scale bits), every stored bit counted
  (1 would be every stored bit a remembered one). The per-row formats pay 32 bits per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.lines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402

from rnncap.analysis.output import write_png_atomic  # noqa: E402
from rnncap.analysis.precision import PRECISIONS  # noqa: E402
from rnncap.analysis.tables import ALL_DEPTHS, CONF_DIR, Row, cell_display, ordered_cells  # noqa: E402

LINE_FORMATS = ("ternary", "int4", "int8", "bf16", "fp32")  # per tensor, joined by a line
MARKERS = {"int4_row": "o", "int8_row": "o", "fp16": "x"}  # drawn as single markers
TRAINED_STYLE = {"32-true": "-", "bf16-mixed": "--"}
PANELS = (
    ("slope", "bits per parameter"),
    ("bits_per_weight_bit", "bits per weight bit\n(scales left out)"),
    ("bits_per_stored_bit", "bits per stored bit\n(weights + fp32 scales)"),
)


def draw_panel(ax: plt.Axes, rows: Sequence[Row], key: str, conf_dir: Path) -> None:
    """One depth's cells: ``key`` against bits per weight, per training precision."""
    for cell in ordered_cells(rows, conf_dir):
        color = cell_display(cell, conf_dir).color
        for how in sorted({r["trained"] for r in rows}):
            own = {r["precision"]: r for r in rows if (r["cell"], r["trained"]) == (cell, how)}
            line = [f for f in LINE_FORMATS if f in own]
            ax.plot([PRECISIONS[f] for f in line], [own[f][key] for f in line],
                    ls=TRAINED_STYLE.get(how, ":"), marker="s", ms=4, color=color)  # fmt: skip
            for name, marker in MARKERS.items():
                if name in own:
                    ax.plot(PRECISIONS[name], own[name][key], marker, ms=6, color=color,
                            mfc="none" if marker == "o" else color)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(mticker.FixedLocator(sorted(set(PRECISIONS.values()))))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_locator(mticker.NullLocator())
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


def legend_handles(rows: Sequence[Row], conf_dir: Path) -> list[matplotlib.lines.Line2D]:
    """A key per cell, per training precision and per marker."""
    line = matplotlib.lines.Line2D
    handles = [
        line(
            [],
            [],
            color=cell_display(c, conf_dir).color,
            marker="s",
            label=cell_display(c, conf_dir).label,
        )  # fmt: skip
        for c in ordered_cells(rows, conf_dir)
    ]
    handles += [
        line([], [], color="k", ls=TRAINED_STYLE.get(t, ":"), label=f"trained {t}")
        for t in sorted({r["trained"] for r in rows}, key=lambda t: t != "32-true")
    ]
    handles += [
        line([], [], color="k", ls="", marker="o", mfc="none", label="int8/int4, row scales"),
        line([], [], color="k", ls="", marker="x", label="fp16"),
    ]
    return handles


def precision_figure(fits: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Bits per parameter and per stored bit against bits per weight, per cell and depth."""
    rows = [r for r in fits if r["depth"] != ALL_DEPTHS and math.isfinite(r["slope"])]
    depths = sorted({r["depth"] for r in rows}) or [1]
    fig, axes = plt.subplots(
        len(PANELS), len(depths), figsize=(4.6 * len(depths) + 1.8, 9.5), squeeze=False,
        sharex=True,
    )  # fmt: skip
    for column, depth in enumerate(depths):
        at_depth = [r for r in rows if r["depth"] == depth]
        for row, (key, label) in enumerate(PANELS):
            draw_panel(axes[row, column], at_depth, key, conf_dir)
            axes[row, 0].set_ylabel(label)
        axes[0, column].set_title(f"{depth} layer" + ("s" if depth > 1 else ""))
        axes[-1, column].set_xlabel("bits per stored weight")
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no capacity runs", ha="center", transform=axes[0, 0].transAxes)
    fig.legend(handles=legend_handles(rows, conf_dir), fontsize=8, loc="center right")
    fig.suptitle(
        "Capacity with the trained weights rounded (ternary, int4, int8, bf16/fp16, fp32)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / (4.6 * len(depths) + 1.8), 1))
    return fig


def write_precision_figure(fits: Sequence[Row], path: Path, conf_dir: Path = CONF_DIR) -> Path:
    """Draw the figure and write it as PNG atomically."""
    write_png_atomic(precision_figure(fits, conf_dir), path)
    return path
