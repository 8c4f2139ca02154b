"""What the grids of one run per (cell, depth, width[, axis], seed) share (distance, counting):
their ``train.py -m`` commands, one per cell group, and the analysis command of their task."""

from __future__ import annotations

import argparse

from rnncap.experiments import Grid
from rnncap.experiments.options import UsageError, cell_configs, folder, path
from rnncap.train_grid import (
    RUN,
    cell_groups,
    hydra_list,
    override_value,
    parallel,
    split_overrides,
)


def task_commands(grid: Grid, task: str, axis: tuple[str, str] | None = None) -> list[list[str]]:
    """One command per cell group: one run per (cell, depth, width[, axis], seed) of ``task``,
    under ``<runs>/<subdir>``; ``axis`` = (the override, the grid's key of its values)."""
    train = grid["train"]
    sweep = [f"{axis[0]}={hydra_list(grid[axis[1]])}"] if axis else []
    subdir = "${cell.name}-d${depth}-n${model.hidden}"
    subdir += f"-{axis[1].removesuffix('s')}${{{axis[0]}}}" if axis else ""
    return [
        [
            "-m",
            f"task={task}",
            f"cell={hydra_list(cells)}",
            f"depth={hydra_list(depths)}",
            f"model.hidden={hydra_list(grid['widths'])}",
            *sweep,
            f"seed={hydra_list(grid['seeds'])}",
            *(f"task.{k}={override_value(v)}" for k, v in grid["task"].items()),
            f"trainer.max_steps={train['max_steps']}",
            f"trainer.val_check_interval={train['max_steps']}",
            f"optimizer.lr={train['lr']}",
            *parallel(grid.jobs),
            f"hydra.sweep.dir={grid.runs}",
            f"hydra.sweep.subdir={subdir}-s${{seed}}",
            *RUN,
            *split_overrides(grid.get("overrides")),
        ]
        for cells, depths in cell_groups(grid)
    ]


def runs_options(parser: argparse.ArgumentParser, grid: str) -> None:
    path(parser, "--runs", f"results/{grid}/runs", f"the task={grid} runs, recursively")
    path(parser, "--out", f"results/{grid}/report", "where the tables, figure and summary go")
    cell_configs(parser)


def analyse_runs(args: argparse.Namespace, analyse, *extra):
    """``analyse(runs, out, *extra, cell_configs)``; no finished run of the task is one line."""
    from rnncap.analysis.task_runs import NoRuns

    folder(args.runs, "--runs")
    try:
        return analyse(args.runs, args.out, *extra, args.cell_configs)
    except NoRuns as err:
        raise UsageError(str(err)) from None
