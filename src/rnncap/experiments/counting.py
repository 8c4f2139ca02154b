"""Counting: Dyck-1 depth, trained on short strings and tested on long ones (``task=counting``).

Grid (``grids.counting``): one run per (cell, depth, width, seed), trained on
``task.train_length`` and tested on ``task.test_lengths``. Analysis: ``rnncap counting``, the
accuracy against string length and the saturation of the gates on the longest strings.
"""

from __future__ import annotations

import argparse

from rnncap.experiments import Command, Experiment, Grid
from rnncap.experiments.task_grid import analyse_runs, runs_options, task_commands


def expand(grid: Grid) -> list[list[str]]:
    return task_commands(grid, "counting")


def analyse(grid: Grid) -> list[list[str]]:
    return [["counting", "--runs", str(grid.runs), "--out", str(grid.report)]]


COUNTING = """counting generalisation from task=counting runs: accuracy against length

Per (cell, depth, width): per-step accuracy at the training length and at each test length
(mean over seeds, range beside it) and the saturation of the tanh/sigmoid outputs on the
longest strings. Writes long_accuracy.csv, counting.csv, long_accuracy.png (log length axis)
and summary.json.
"""


def run(args: argparse.Namespace) -> None:
    from rnncap.analysis.counting import analyse as counting
    from rnncap.analysis.tables import cell_label

    result = analyse_runs(args, counting)
    print(f"read {result['runs']} runs; wrote {args.out}/long_accuracy.csv, .png, summary.json")
    for row in result["table"]:
        label = cell_label(row["cell"], args.cell_configs)
        saturation = "n/a" if row["saturation"] is None else f"{row['saturation']:.3f}"
        accuracy = "n/a" if row["long_accuracy"] is None else f"{row['long_accuracy']:.3f}"
        print(
            f"  {label:>6} depth {row['depth']} x {row['hidden']:>3} units: accuracy at "
            f"length {row['longest']} {accuracy}, saturation {saturation}"
        )


EXPERIMENT = Experiment(
    name="counting",
    doc=__doc__,
    expand=expand,
    analyse=analyse,
    commands=(Command("counting", COUNTING, lambda p: runs_options(p, "counting"), run),),
    outputs=("long_accuracy.csv", "counting.csv", "long_accuracy.png", "summary.json"),
)
