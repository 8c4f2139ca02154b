"""A grid of ``params.yaml`` as ``python train.py -m`` runs: one process for all of a grid's
points, one worker process per core (``hydra/launcher=joblib``), so that torch and Lightning
are imported a few times per grid, not once per run.

The grid's experiment (``grids.<name>.experiment``, a module of ``rnncap.experiments``) says
how its entry expands into runs; this module holds what the expansions share and runs them.
``rnncap train-grid NAME [--params FILE] [--dry-run]`` runs one from the project root; the DVC
stages ``train@NAME`` call it. Runs go to ``results/<grid>/runs``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RUN = ["trainer.checkpoint_every=null", "trainer.enable_progress_bar=false"]


def hydra_list(values: Sequence[Any]) -> str:
    """[1, 2] -> "1,2": a Hydra sweep over the values."""
    return ",".join(str(v) for v in values)


def split_overrides(value: str | Sequence[str] | None) -> list[str]:
    """train.py overrides as params.yaml writes them, one string ``"a=1 b=2"``, as a list."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def parallel(jobs: int) -> list[str]:
    """One worker process per job, each with its own torch."""
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]


def override_value(value: Any) -> str:
    """A task setting as a Hydra override value: a list without spaces, ``[40,200]``."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def cell_groups(grid: Mapping[str, Any]) -> list[tuple[list[str], list[int]]]:
    """(cells, depths) of a grid: ``cells`` x ``depths``, then ``deep_cells`` x ``deep_depths``
    (cells such as the +RNN that need depth >= 2); an empty group is left out."""
    groups = [
        (grid.get("cells"), grid.get("depths")),
        (grid.get("deep_cells"), grid.get("deep_depths")),
    ]
    return [(list(cells), list(depths)) for cells, depths in groups if cells and depths]


def run_grid(
    commands: list[list[str]], out: Path | str, root: Path = Path("."), dry_run: bool = False
) -> None:
    """Run (or with ``dry_run`` only print) each command with ``root``'s train.py; the grid's
    folder ``out`` exists afterwards even when the grid is empty."""
    if not dry_run:
        (root / out).mkdir(parents=True, exist_ok=True)
    for args in commands:
        cmd = [sys.executable, str(root / "train.py"), *args]
        print(f"run: python train.py {' '.join(args)}", flush=True)
        if not dry_run:
            subprocess.run(cmd, check=True, cwd=root)
