"""Capacity (the paper's Figure 1) and per-unit memory (Figure 2c): the default experiment.

Grid (``grids.capacity``, ``grids.beyond``): a short search per (cell, depth, budget, seed)
point (``search.sweep``, one Optuna study per point through ``hydra.sweeper.grid``), its
trials trained as populations; a point's capacity is the maximum of bits over its trials. Points
a cell cannot take (the +RNN at depth 1) are skipped. Its ``memory`` part (may be null): one
run per (cell, depth, width, seed) of ``task=memory`` on data sets written before training, the
cells that need depth >= 2 (``deep_cells``) at ``deep_depths``.

Analysis: ``rnncap fit`` (capacity, bits per parameter and their fits with bootstrap intervals;
per-unit memory) then ``rnncap plot`` (the figures), into ``results/<grid>/report``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rnncap.experiments import Command, Experiment, Grid
from rnncap.experiments.options import (
    UsageError,
    cell_configs,
    folder,
    path,
    positive,
    storage,
    tracking,
)
from rnncap.train_grid import RUN, cell_groups, hydra_list, parallel, split_overrides


def search_commands(grid: Grid, out: Path) -> list[list[str]]:
    """The capacity search's ``train.py -m`` commands, one per cell group (``cells`` at
    ``depths``, then ``deep_cells`` at ``deep_depths``): their arguments after ``train.py``."""
    return [search_command(grid, out, cells, depths) for cells, depths in cell_groups(grid)]


def search_command(grid: Grid, out: Path, cells: list[str], depths: list[int]) -> list[str]:
    """One cell group's search: a study per (cell, depth, budget, seed) point, its trials
    trained as populations, with successive halving where ``search.halving`` sets it."""
    search, task = grid["search"], grid["task"]
    halving = search.get("halving") or {}
    return [
        "-m",
        f"sweep={search['sweep']}",
        "task=capacity",
        f"cell={hydra_list(cells)}",
        f"depth={hydra_list(depths)}",
        f"model.budget={hydra_list(grid['budgets'])}",
        f"seed={hydra_list(grid['seeds'])}",
        "hydra.sweeper.grid=[cell,depth,model.budget,seed]",
        f"hydra.sweeper.n_trials={search['trials']}",
        f"hydra.sweeper.population={search['population']}",
        f"hydra.sweeper.pruner={search['pruner'] or 'null'}",
        *split_overrides(search.get("pruner_args")),
        f"trainer.val_check_interval={search['val_check_interval']}",
        *([] if search["max_steps"] is None else [f"trainer.max_steps={search['max_steps']}"]),
        *(f"model.halving.{key}={value}" for key, value in halving.items() if value is not None),
        *([] if search.get("seed") is None else [f"hydra.sweeper.sampler.seed={search['seed']}"]),
        *parallel(grid.jobs),
        f"hydra.sweeper.n_jobs={grid.jobs}",
        f"hydra.sweeper.storage=journal:///{out}/studies.log",
        f"hydra.sweep.dir={out}",
        f"task.input_dim={task['input_dim']}",
        f"task.steps={task['steps']}",
        *RUN,
        *split_overrides(grid.get("overrides")),
    ]


def memory_data(grid: Grid, seed: Any) -> Path:
    return grid.runs / "data" / f"s{seed}.pt"


def memory_task(memory: dict[str, Any]) -> list[str]:
    return [f"task.{k}={v}" for k, v in memory["task"].items()]


def memory_commands(grid: Grid, out: Path) -> list[list[str]]:
    """The memory part's ``train.py -m`` commands: the cells, then the deep cells."""
    memory = grid.get("memory")
    if not memory:
        return []
    return [
        [
            "-m",
            "task=memory",
            f"cell={hydra_list(cells)}",
            f"depth={hydra_list(depths)}",
            f"model.hidden={hydra_list(memory['widths'])}",
            f"seed={hydra_list(memory['seeds'])}",
            f"task.data_file={memory_data(grid, '${seed}')}",
            *memory_task(memory),
            f"trainer.max_steps={memory['train']['max_steps']}",
            f"optimizer.lr={memory['train']['lr']}",
            *parallel(grid.jobs),
            f"hydra.sweep.dir={out}",
            "hydra.sweep.subdir=${cell.name}-d${depth}-n${model.hidden}-s${seed}",
            *RUN,
            *split_overrides(grid.get("overrides")),
        ]
        for cells, depths in cell_groups(memory)
    ]


def expand(grid: Grid) -> list[list[str]]:
    return [
        *search_commands(grid, grid.runs / "capacity"),
        *memory_commands(grid, grid.runs / "memory"),
    ]


def prepare(grid: Grid) -> list[list[str]]:
    """The memory task's data sets, one file per seed, read by every memory run."""
    memory = grid.get("memory")
    if not memory or not cell_groups(memory):
        return []
    return [
        [
            "generate",
            "data",
            str(memory_data(grid, seed)),
            "task=memory",
            f"seed={seed}",
            *memory_task(memory),
        ]  # fmt: skip
        for seed in memory["seeds"]
    ]


def analyse(grid: Grid) -> list[list[str]]:
    report, track = str(grid.report), ["--experiment", grid.experiment_group, "--wandb", grid.wandb]
    fit = ["fit", "--runs", str(grid.runs), "--out", report, "--metrics", f"{report}/summary.json"]
    return [[*fit, *track], ["plot", "--tables", report, "--out", report, *track]]


def summary(result: dict[str, Any]) -> str:
    """Bits per parameter per cell and depth, with intervals (``headline_table``)."""
    from rnncap.analysis.capacity import headline_table

    return headline_table(result)


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers ``dvc metrics show`` prints: mean bits per parameter per cell and depth
    (the paper's Figure 1i), one column each."""
    cells = result["capacity"]
    return {
        cell: {
            d.replace("depth", "d"): m.get("mean_bits_per_param") for d, m in cells[cell].items()
        }
        for cell in sorted(cells)
    }


# ---- rnncap fit and rnncap plot -----------------------------------------------------------
FIT = """capacity and bits per parameter with fits and CIs; memory

Reads every metrics.json under --runs (and with --studies the finished trials of tuned Optuna
studies) and writes capacity.csv, fits.csv, points.csv, convergence.csv and memory.csv into
--out, the summary JSON (--metrics) and, beside it, metrics.json (mean bits per parameter per
cell and depth, the DVC metrics).
Capacity of a model size = max of bits over its runs (all b and seeds); per cell (and depth)
the line capacity = slope * params through the origin (slope = bits per parameter) and the
log-log exponent; per-unit memory next to the theory max(0, (d - N) / d).
"""
PLOT = """the capacity and memory figures (PNG)

Reads the tables of `rnncap fit` and writes capacity_vs_params.png, bits_per_param.png,
convergence.png and memory_per_unit.png. Cells are drawn in their display order, label and colour.
"""
TABLES = ("capacity", "fits", "memory")


def fit_options(parser: argparse.ArgumentParser) -> None:
    path(parser, "--runs", "results/capacity/runs", "the run folders (a metrics.json each)")
    path(parser, "--out", "results/capacity/report", "where the tables go")
    path(parser, "--metrics", "results/capacity/report/summary.json", "the summary", "FILE")
    parser.add_argument("--boot", type=int, default=2000, metavar="N", help="bootstrap resamples")
    parser.add_argument(
        "--studies",
        nargs="*",
        default=[],
        metavar="URL",
        help="Optuna storages (sqlite:///...) whose trials join the runs",
    )
    tracking(parser)
    cell_configs(parser)


def run_fit(args: argparse.Namespace) -> None:
    from rnncap.analysis.capacity import analyse as fit
    from rnncap.analysis.capacity import headline_table
    from rnncap.analysis.tables import read_runs
    from rnncap.base.io import write_json_atomic

    folder(args.runs, "--runs")
    positive("--boot", args.boot)
    studies = [storage(url, "--studies") for url in args.studies]
    if not studies and not read_runs(args.runs):  # header-only tables would look finished
        raise UsageError(f"--runs {args.runs}: no finished run (no metrics.json under it)")
    result = fit(args.runs, args.out, args.metrics, args.boot, studies, args.cell_configs)
    summary_json = json.loads(Path(args.metrics).read_text())
    write_json_atomic(Path(args.metrics).with_name("metrics.json"), metrics(summary_json))
    print(f"read {result['runs']} runs; wrote {args.out}/*.csv and {args.metrics}")
    print(headline_table(summary_json, args.cell_configs))  # per cell and depth, not pooled
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_analysis

        log_analysis(result, args.experiment, args.wandb)


def plot_options(parser: argparse.ArgumentParser) -> None:
    path(parser, "--tables", "results/capacity/report", "the tables of rnncap fit")
    path(parser, "--out", "results/capacity/report", "where the figures go")
    tracking(parser)
    cell_configs(parser)


def run_plot(args: argparse.Namespace) -> None:
    from rnncap.analysis.plots import plot_all
    from rnncap.analysis.tables import read_csv

    folder(args.tables, "--tables")
    for name in TABLES:
        if not (args.tables / f"{name}.csv").is_file():
            raise UsageError(f"--tables {args.tables} has no {name}.csv (rnncap fit writes it)")
    paths = plot_all(args.tables, args.out, args.cell_configs)
    print("wrote " + ", ".join(map(str, paths)))
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_figures

        tables = {k: read_csv(args.tables / f"{k}.csv") for k in TABLES}
        log_figures(paths, tables, args.experiment, args.wandb)


EXPERIMENT = Experiment(
    name="capacity",
    doc=__doc__,
    expand=expand,
    prepare=prepare,
    analyse=analyse,
    commands=(
        Command("fit", FIT, fit_options, run_fit),
        Command("plot", PLOT, plot_options, run_plot),
    ),
    outputs=(
        "capacity.csv",
        "fits.csv",
        "points.csv",
        "convergence.csv",
        "memory.csv",
        "summary.json",
        "metrics.json",
        "capacity_vs_params.png",
        "bits_per_param.png",
        "convergence.png",
        "memory_per_unit.png",
    ),  # fmt: skip
    summary=summary,
)
