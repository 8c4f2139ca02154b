"""Analysis figures written atomically: a PNG appears whole or not at all
(``rnncap.base.io.write_atomic``; CSV tables: ``rnncap.analysis.tables.write_csv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnncap.base.io import write_atomic


def write_png_atomic(figure: Any, path: Path, dpi: int = 130) -> None:
    """A matplotlib figure as PNG, atomically; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    try:
        write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=dpi), binary=True)
    finally:
        plt.close(figure)
