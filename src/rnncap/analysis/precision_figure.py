"""The figure of capacity under reduced precision (``precision.png``), from the fits of
``rnncap.analysis.rescore``, pooled over depths:

- left: bits per parameter against the bits each weight is stored in (log2 axis: ternary
  1.58, int4, int8, 16-bit, fp32), one colour per cell; per-tensor formats joined by a line,
  per-row scales as hollow markers, fp16 as a cross; a grid trained in bf16-mixed dashed;
- right: bits per stored bit, bits / (params x bits per weight), the same way (1 would be
  every stored bit a remembered one).
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

from rnncap.analysis.precision import PRECISIONS  # noqa: E402
from rnncap.analysis.tables import ALL_DEPTHS, CONF_DIR, Row, cell_display, ordered_cells  # noqa: E402
from rnncap.core.io import write_atomic  # noqa: E402

LINE_FORMATS = ("ternary", "int4", "int8", "bf16", "fp32")  # per tensor, joined by a line
MARKERS = {"int4_row": "o", "int8_row": "o", "fp16": "x"}  # drawn as single markers
TRAINED_STYLE = {"32-true": "-", "bf16-mixed": "--"}
PANELS = (("slope", "bits per parameter"), ("bits_per_stored_bit", "bits per stored bit"))


def precision_figure(fits: Sequence[Row], conf_dir: Path = CONF_DIR) -> plt.Figure:
    """Bits per parameter and per stored bit against bits per weight, per cell."""
    rows = [r for r in fits if r["depth"] == ALL_DEPTHS and math.isfinite(r["slope"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    trained = sorted({r["trained"] for r in rows}, key=lambda t: t != "32-true")
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for cell in ordered_cells(rows, conf_dir):
            color = cell_display(cell, conf_dir).color
            for how in trained:
                own = {r["precision"]: r for r in rows if (r["cell"], r["trained"]) == (cell, how)}
                line = [f for f in LINE_FORMATS if f in own]
                ax.plot([PRECISIONS[f] for f in line], [own[f][key] for f in line],
                        ls=TRAINED_STYLE.get(how, ":"), marker="s", ms=4, color=color)  # fmt: skip
                for name, marker in MARKERS.items():
                    if name in own:
                        ax.plot(PRECISIONS[name], own[name][key], marker, ms=6, color=color,
                                mfc="none" if marker == "o" else color)  # fmt: skip
        ax.set_xscale("log", base=2)
        ticks = sorted({PRECISIONS[f] for f in PRECISIONS})
        ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set(xlabel="bits per stored weight", ylabel=label, ylim=(0, None))
        ax.grid(True, alpha=0.3)
    if not rows:
        axes[0].text(0.5, 0.5, "no capacity runs", ha="center", transform=axes[0].transAxes)
    handles = [
        matplotlib.lines.Line2D(
            [],
            [],
            color=cell_display(c, conf_dir).color,
            marker="s",
            label=cell_display(c, conf_dir).label,
        )  # fmt: skip
        for c in ordered_cells(rows, conf_dir)
    ]
    handles += [
        matplotlib.lines.Line2D(
            [], [], color="k", ls=TRAINED_STYLE.get(t, ":"), label=f"trained {t}"
        )  # fmt: skip
        for t in trained
    ]
    handles += [
        matplotlib.lines.Line2D(
            [], [], color="k", ls="", marker="o", mfc="none", label="int8/int4 per-row scales"
        ),  # fmt: skip
        matplotlib.lines.Line2D([], [], color="k", ls="", marker="x", label="fp16"),
    ]
    axes[0].legend(handles=handles, fontsize=7, loc="upper left")
    fig.suptitle(
        "Capacity with the trained weights rounded (ternary, int4, int8, bf16/fp16, fp32)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def write_precision_figure(fits: Sequence[Row], path: Path, conf_dir: Path = CONF_DIR) -> Path:
    """Draw the figure and write it as PNG atomically."""
    fig = precision_figure(fits, conf_dir)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=130), binary=True)
    plt.close(fig)
    return path
