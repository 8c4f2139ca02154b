"""Capacity under reduced precision (Morris et al. 2025 measured 3.51 vs 3.83 bits/param).

Grid (``grids.precision``, the capacity grid by a YAML merge key, narrowed): the capacity
search trained again in Lightning's ``precision`` (e.g. bf16-mixed). Analysis: ``rnncap
precision`` re-scores every finished capacity model of ``analysis.reads`` (the fp32 grid's
runs) and of this grid with its weights rounded to each of ``formats``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnncap.experiments import Command, Experiment, Grid
from rnncap.experiments.capacity import search_commands
from rnncap.experiments.options import UsageError, cell_configs, folder, one_line, path

FORMATS = ["fp32", "bf16", "fp16", "int8", "int8_row", "int4", "int4_row", "ternary"]


def expand(grid: Grid) -> list[list[str]]:
    commands = search_commands(grid, grid.runs / "capacity")
    return [[*command, f"hardware.precision={grid['precision']}"] for command in commands]


def analyse(grid: Grid) -> list[list[str]]:
    runs = [grid["analysis"]["reads"], str(grid.runs / "capacity")]
    formats = str(grid["formats"]).split()
    return [["precision", "--runs", *runs, "--out", str(grid.report), "--precisions", *formats]]


PRECISION = """capacity with the trained weights rounded to fewer bits

Every finished capacity run under --runs (its metrics.json, weights.pt and .hydra config) is
rebuilt member by member and scored again with its weights rounded to each precision: bf16,
fp16, int8 and int4 (symmetric, one scale per tensor or, _row, per output row), ternary; fp32
reproduces the run's own bits (summary.json counts fp32_mismatches). Writes scores.csv (per
member and precision), precision.csv (bits per parameter and per stored bit, per cell, depth,
training precision and format), precision.png and summary.json. A run of another task, or one
without saved weights, is refused before anything is written.
"""


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["results/capacity/runs/capacity", "results/precision/runs/capacity"],
        metavar="DIR",
        help="folders of finished capacity runs; default: the fp32 grid and the bf16-mixed one",
    )
    path(parser, "--out", "results/precision/report", "where the tables and figure go")
    parser.add_argument(
        "--precisions", nargs="+", default=FORMATS, metavar="NAME", help="the formats to score"
    )
    cell_configs(parser)


def run(args: argparse.Namespace) -> None:
    from rnncap.analysis.precision import PRECISIONS
    from rnncap.analysis.rescore import NotACapacityRun, rescore
    from rnncap.core.resolvers import register_resolvers

    roots = [folder(Path(root), "--runs") for root in args.runs]
    unknown = [p for p in args.precisions if p not in PRECISIONS]
    if unknown:
        allowed = list(PRECISIONS)
        raise UsageError(f"--precisions {' '.join(unknown)}: unknown; choose from {allowed}")
    register_resolvers()  # the runs' configs are read back and resolved
    try:
        result = rescore(roots, args.out, args.precisions, args.cell_configs)
    except NotACapacityRun as err:
        what = "precision re-scores finished capacity runs"
        raise UsageError(f"--runs: {one_line(err)}; {what}") from err
    print(json.dumps(result, indent=2))


EXPERIMENT = Experiment(
    name="precision",
    doc=__doc__,
    expand=expand,
    analyse=analyse,
    commands=(Command("precision", PRECISION, options, run),),
    outputs=("scores.csv", "precision.csv", "precision.png", "summary.json"),
)
