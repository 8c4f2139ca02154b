"""The finished runs of one task under a runs folder (its ``metrics.json`` files)."""

from __future__ import annotations

from pathlib import Path

from rnncap.analysis.tables import Row, read_runs

ENDED = ("ok", "pruned", "diverged")  # a result, or a measured failure (metrics null)


class NoRuns(ValueError):
    """No finished run of the task under the runs folder; the message is one line."""


def task_runs(runs_dir: Path, task: str) -> list[Row]:
    """Every run of ``task`` under ``runs_dir`` that ended (``ENDED``); ``NoRuns`` if none."""
    runs = [r for r in read_runs(runs_dir) if r.get("task") == task and r.get("status") in ENDED]
    if not runs:
        raise NoRuns(f"--runs {runs_dir}: no finished task={task} run (metrics.json) in it")
    return runs
