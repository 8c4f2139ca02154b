"""Memorisation distance: how far back a cell recalls i.i.d. symbols (``task=distance``).

Grid (``grids.distance``): one run per (cell, depth, width, delay, seed), the deep cells as in
the capacity grid's memory part. Analysis: ``rnncap distance`` turns the delays into a max
distance per (cell, depth, width): the largest delay d with every tested delay <= d recalled
at accuracy >= the grid's ``threshold``.
"""

from __future__ import annotations

import argparse

from rnncap.experiments import Command, Experiment, Grid
from rnncap.experiments.options import UsageError
from rnncap.experiments.task_grid import analyse_runs, runs_options, task_commands


def expand(grid: Grid) -> list[list[str]]:
    return task_commands(grid, "distance", ("task.delay", "delays"))


def analyse(grid: Grid) -> list[list[str]]:
    runs, out, threshold = str(grid.runs), str(grid.report), str(grid["threshold"])
    return [["distance", "--runs", runs, "--out", out, "--threshold", threshold]]


DISTANCE = """max memorisation distance per model size from task=distance runs

Per (cell, depth, width): the accuracy at each tested delay (best over seeds) and the max
distance, the largest delay d such that every tested delay <= d reaches --threshold (a
smaller delay that fails caps it, whatever larger delays do). Writes accuracy.csv,
max_distance.csv, max_distance.png (against units with the bound d <= N, one real number per
unit, and d / N, the share of that bound reached) and summary.json.
"""


def options(parser: argparse.ArgumentParser) -> None:
    runs_options(parser, "distance")
    parser.add_argument(
        "--threshold", type=float, default=0.9, metavar="T", help="accuracy a delay must reach"
    )


def run(args: argparse.Namespace) -> None:
    from rnncap.analysis.distance import analyse as distance
    from rnncap.analysis.tables import cell_label

    if not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold={args.threshold} must be an accuracy in (0, 1]")
    result = analyse_runs(args, distance, args.threshold)
    print(f"read {result['runs']} runs; wrote {args.out}/max_distance.csv, .png, summary.json")
    for row in result["table"]:
        label = cell_label(row["cell"], args.cell_configs)
        more = "+" if row["censored"] else ""
        print(
            f"  {label:>6} depth {row['depth']} x {row['hidden']:>3} units: max distance "
            f"{row['max_distance']}{more} (bound {row['unit_bound']})"
        )


EXPERIMENT = Experiment(
    name="distance",
    doc=__doc__,
    expand=expand,
    analyse=analyse,
    commands=(Command("distance", DISTANCE, options, run),),
    outputs=("accuracy.csv", "max_distance.csv", "max_distance.png", "summary.json"),
)
