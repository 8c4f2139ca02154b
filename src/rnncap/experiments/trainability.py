"""Trainability (the paper's Figure 4 and Table 1): tuner and random-settings studies.

Grid (``grids.trainability``, ``grids.trainability_arithmetic``): each study group of
``studies`` is one ``python train.py -m`` run into one journal storage,
``results/<grid>/runs/studies.log`` (``rnncap.tune_grid``). Analysis: ``rnncap trainability``
draws the tuner curves, the percent of infeasible settings per cell and depth, and the verdict
against the paper.
"""

from __future__ import annotations

import argparse
import json

from rnncap.experiments import Command, Experiment, Grid
from rnncap.experiments.options import UsageError, cell_configs, path, positive, storage, tracking
from rnncap.tune_grid import study_commands


def journal(grid: Grid) -> str:
    return f"journal:///{grid.runs}/studies.log"


def expand(grid: Grid) -> list[list[str]]:
    tune = {**grid.settings, "storage": f"{grid.runs}/studies.log", "runs": str(grid.runs)}
    return [args for _, args in study_commands(tune, grid.jobs)]


def analyse(grid: Grid) -> list[list[str]]:
    depths = [str(d) for d in grid["depths"]]
    return [
        [
            "trainability",
            "--storage",
            journal(grid),
            "--out",
            str(grid.report),
            "--table-sampler",
            "RandomSampler",
            "--depths",
            *depths,
            "--experiment",
            grid.experiment_group,
            "--wandb",
            grid.wandb,
        ]
    ]


TRAINABILITY = """tuner curves and percent infeasible of a study storage

Writes curves.csv and curves.png (per study: each trial's objective, the running median and
the best so far, the paper's Figure 4), infeasible.csv and infeasible.md (percent of diverged
trials of the random-sampler studies per cell and depth, Table 1) and summary.json. Logs one
W&B run per study (job type trainability, group --experiment): config cell.name, depth,
task.name, sampler, objective; a history row per trial with trial, objective, best_so_far,
running_median, diverged, pruned; the dashboard's trainability panels read them. Prints the
summary, then per depth a verdict with 95% bootstrap intervals: agrees, disagrees or not
separated against the paper's most trainable cell, or not comparable outside its setting.
"""


def options(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg(
        "--storage",
        default=argparse.SUPPRESS,  # none given: rnncap.analysis.trainability.default_storage
        metavar="URL",
        help="the Optuna storage of the studies (sqlite:///, journal:/// or a database URL); "
        "default: the trainability grid's journal:///results/trainability/runs/studies.log if "
        "it exists, else the sweeper's sqlite:///results/tune/studies.db",
    )
    arg(
        "--diverged",
        choices=("nonfinite", "loss_above_start"),
        default="nonfinite",
        help="what makes a trial infeasible on the curves and in percent_infeasible: a "
        "non-finite loss, or also a final training loss above the first (the paper's); "
        "the table shows both",
    )
    path(parser, "--out", "results/trainability/report", "where the report goes")
    arg(
        "--curve-sampler",
        metavar="NAME",
        help="curves of this sampler's studies only, e.g. GPSampler; default: every study "
        "not of --table-sampler",
    )
    arg("--table-sampler", default="RandomSampler", metavar="NAME",
        help="the sampler of the percent-infeasible studies")  # fmt: skip
    arg("--depths", type=int, nargs="+", default=[1, 8], metavar="D",
        help="the depths of the percent-infeasible table")  # fmt: skip
    tracking(parser)
    cell_configs(parser)


def run(args: argparse.Namespace) -> None:
    from rnncap.analysis.trainability import default_storage, load_studies, report, study_runs
    from rnncap.analysis.verdicts import verdict_lines
    from rnncap.core.storage import masked

    args.storage = getattr(args, "storage", None) or default_storage()
    if args.storage is None:
        raise UsageError(
            "--storage: not given, and neither the trainability grid's "
            "results/trainability/runs/studies.log nor the sweeper's results/tune/studies.db "
            "exists here; give --storage URL"
        )
    storage(args.storage, "--storage")
    for depth in args.depths:
        positive("--depths", depth)
    studies = load_studies(args.storage)
    summary = report(
        args.storage,
        args.out,
        args.curve_sampler,
        args.table_sampler,
        args.depths,
        args.cell_configs,
        studies,
        args.diverged,
    )
    print(json.dumps(summary, indent=2))
    shown = masked(args.storage)  # a password in the URL is never printed
    print("\n".join([f"storage {shown}", *verdict_lines(summary["most_trainable"])]))
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_studies

        log_studies(study_runs(studies), args.experiment, args.wandb)


EXPERIMENT = Experiment(
    name="trainability",
    doc=__doc__,
    expand=expand,
    analyse=analyse,
    commands=(Command("trainability", TRAINABILITY, options, run),),
    outputs=("curves.png", "curves.csv", "infeasible.csv", "infeasible.md", "summary.json"),
)
