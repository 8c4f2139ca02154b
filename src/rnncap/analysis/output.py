"""Analysis outputs written atomically: a CSV table or a PNG figure appears whole or not at all
(``rnncap.core.io.write_atomic``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from rnncap.core.io import write_atomic


def write_csv_atomic(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    """Rows as CSV with a header (``tables.read_csv`` reads it back), atomically."""

    def write(f: IO) -> None:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write)


def write_png_atomic(figure: Any, path: Path, dpi: int = 130) -> None:
    """A matplotlib figure as PNG, atomically; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    try:
        write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=dpi), binary=True)
    finally:
        plt.close(figure)
