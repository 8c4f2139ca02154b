"""``rnncap``: the command line of everything besides training (``python train.py``).

    rnncap generate data FILE [train.py overrides...]   a task's data sets, for task.data_file
    rnncap generate cells DIR                           every cell's composed config
    rnncap fit [--runs DIR] [--out DIR] [--metrics FILE] [--studies URL ...]
    rnncap plot [--tables DIR] [--out DIR]
    rnncap train-grid capacity|memory|precision|distance|counting|<kind>_<x> [--params FILE]
    rnncap distance [--runs DIR] [--out DIR] [--threshold T]   max recall distance per size
    rnncap counting [--runs DIR] [--out DIR]          accuracy against string length
    rnncap tune-grid [--params FILE] [--dry-run]
    rnncap trainability [--storage URL] [--out DIR]
    rnncap precision [--runs DIR ...] [--out DIR] [--precisions NAME ...]
    rnncap exp-params FILE | xargs dvc exp run        FILE's grid as a DVC experiment
    rnncap dashboard --project P [--group G] [--wandb online]   W&B workspace and report

Each subcommand parses its arguments here and calls a computation module (``rnncap.generate``,
``rnncap.analysis.*``); W&B logging goes through ``rnncap.analysis.tracking`` only. Modules are
imported by the subcommand that needs them. Bad input ends the command with one line
``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnncap.base.errors import ConfigError

WANDB_MODES = ["offline", "online", "disabled"]


class UsageError(ValueError):
    """A bad argument; the message is one line naming it."""


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def _folder(path: Path, option: str) -> Path:
    if not path.is_dir():
        raise UsageError(f"{option} {path}: no such folder")
    return path


def _file(path: Path, option: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return path


def _storage(url: str, option: str) -> str:
    """An Optuna storage URL; a SQLite or journal file must exist (Optuna would create an
    empty one)."""
    if "://" not in url:
        raise UsageError(f"{option} {url}: not a storage URL (e.g. sqlite:///results/tune/x.db)")
    for prefix in ("sqlite:///", "journal:///"):
        path = Path(url.removeprefix(prefix))
        if url.startswith(prefix) and not path.is_file():
            raise UsageError(f"{option} {url}: no such file {path}")
    return url


def _positive(option: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{option}={value} must be a positive integer")
    return value


# ---- generate --------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    from hydra.errors import HydraException

    from rnncap.core.validate import compose_error
    from rnncap.generate import generate, write_cell_configs

    _folder(args.config_dir, "--config-dir")
    if args.what == "cells":
        _folder(args.config_dir / "cell", "--config-dir")
        paths = write_cell_configs(args.out, args.config_dir)
        print(f"wrote {len(paths)} cell configs into {args.out}")
        return
    try:
        key = generate(args.out, args.overrides, args.config_dir)
    except HydraException as err:  # a refused value in one line, else Hydra's message
        line = compose_error(err) or f"overrides {' '.join(args.overrides)}: {_one_line(err)}"
        raise UsageError(line) from err
    print(f"wrote {args.out}: {key}")


# ---- fit and plot ----------------------------------------------------------------------------
def cmd_fit(args: argparse.Namespace) -> None:
    from rnncap.analysis.capacity import analyse
    from rnncap.analysis.tables import ALL_DEPTHS, cell_label

    _folder(args.runs, "--runs")
    _positive("--boot", args.boot)
    studies = [_storage(url, "--studies") for url in args.studies]
    result = analyse(args.runs, args.out, args.metrics, args.boot, studies, args.cell_configs)
    print(f"read {result['runs']} runs; wrote {args.out}/*.csv and {args.metrics}")
    for fit in (f for f in result["fits"] if f["depth"] == ALL_DEPTHS):
        label = cell_label(fit["cell"], args.cell_configs)
        print(
            f"  {label:>6}: {fit['slope']:.2f} bits/param "
            f"[{fit['slope_lo']:.2f}, {fit['slope_hi']:.2f}], exponent {fit['exponent']:.2f}"
        )
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_analysis

        log_analysis(result, args.experiment, args.wandb)


def cmd_plot(args: argparse.Namespace) -> None:
    from rnncap.analysis.plots import plot_all
    from rnncap.analysis.tables import read_csv

    _folder(args.tables, "--tables")
    names = ("capacity", "fits", "memory")
    for name in names:
        if not (args.tables / f"{name}.csv").is_file():
            raise UsageError(f"--tables {args.tables} has no {name}.csv (rnncap fit writes it)")
    paths = plot_all(args.tables, args.out, args.cell_configs)
    print("wrote " + ", ".join(map(str, paths)))
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_figures

        tables = {k: read_csv(args.tables / f"{k}.csv") for k in names}
        log_figures(paths, tables, args.experiment, args.wandb)


# ---- distance and counting ------------------------------------------------------------------
def _threshold(value: float) -> float:
    if not 0 < value <= 1:
        raise UsageError(f"--threshold={value} must be an accuracy in (0, 1]")
    return value


def cmd_distance(args: argparse.Namespace) -> None:
    from rnncap.analysis.distance import analyse
    from rnncap.analysis.tables import cell_label
    from rnncap.analysis.task_runs import NoRuns

    _folder(args.runs, "--runs")
    threshold = _threshold(args.threshold)
    try:
        result = analyse(args.runs, args.out, threshold, args.cell_configs)
    except NoRuns as err:
        raise UsageError(str(err)) from None
    print(f"read {result['runs']} runs; wrote {args.out}/max_distance.csv, .png, summary.json")
    for row in result["table"]:
        label = cell_label(row["cell"], args.cell_configs)
        more = "+" if row["censored"] else ""
        print(
            f"  {label:>6} depth {row['depth']} x {row['hidden']:>3} units: max distance "
            f"{row['max_distance']}{more} (bound {row['unit_bound']})"
        )


def cmd_counting(args: argparse.Namespace) -> None:
    from rnncap.analysis.counting import analyse
    from rnncap.analysis.tables import cell_label
    from rnncap.analysis.task_runs import NoRuns

    _folder(args.runs, "--runs")
    try:
        result = analyse(args.runs, args.out, args.cell_configs)
    except NoRuns as err:
        raise UsageError(str(err)) from None
    print(f"read {result['runs']} runs; wrote {args.out}/long_accuracy.csv, .png, summary.json")
    for row in result["table"]:
        label = cell_label(row["cell"], args.cell_configs)
        saturation = "n/a" if row["saturation"] is None else f"{row['saturation']:.3f}"
        accuracy = "n/a" if row["long_accuracy"] is None else f"{row['long_accuracy']:.3f}"
        print(
            f"  {label:>6} depth {row['depth']} x {row['hidden']:>3} units: accuracy at "
            f"length {row['longest']} {accuracy}, saturation {saturation}"
        )


# ---- training and tuning ---------------------------------------------------------------------
def cmd_train_grid(args: argparse.Namespace) -> None:
    from rnncap.train_grid import grid_commands, grid_folder, run_grid

    _file(args.params, "--params")
    if not Path("train.py").is_file() or not Path("conf").is_dir():
        raise UsageError("train.py and conf/ are not here: run rnncap train-grid in the project")
    try:
        commands = grid_commands(args.params, args.grid)
        out = grid_folder(args.params, args.grid)
    except (ValueError, KeyError) as err:
        raise UsageError(f"--params {args.params}: {args.grid}: {_one_line(err)}") from err
    try:
        run_grid(commands, out, Path("."), args.dry_run)
    except subprocess.CalledProcessError as err:
        print(f"error: python {shlex.join(map(str, err.cmd[1:]))} failed", file=sys.stderr)
        sys.exit(err.returncode)


def cmd_tune_grid(args: argparse.Namespace) -> None:
    from rnncap.tune_grid import load_grid, run_grid

    _file(args.params, "--params")
    if not Path("train.py").is_file() or not Path("conf").is_dir():
        raise UsageError("train.py and conf/ are not here: run rnncap tune-grid in the project")
    try:
        tune, jobs = load_grid(args.params, args.section)
    except ValueError as err:
        raise UsageError(f"--params {err}") from err
    try:
        run_grid(tune, jobs, Path("."), args.dry_run)
    except subprocess.CalledProcessError as err:
        print(f"error: python {shlex.join(map(str, err.cmd[1:]))} failed", file=sys.stderr)
        sys.exit(err.returncode)


def cmd_trainability(args: argparse.Namespace) -> None:
    from rnncap.analysis.trainability import default_storage, load_studies, report, study_runs
    from rnncap.analysis.verdicts import verdict_lines

    args.storage = getattr(args, "storage", None) or default_storage()
    if args.storage is None:
        raise UsageError(
            "--storage: not given, and neither the tune stage's results/tune/trainability.log "
            "nor the sweeper's results/tune/studies.db exists here; give --storage URL"
        )
    _storage(args.storage, "--storage")
    for depth in args.depths:
        _positive("--depths", depth)
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
    print("\n".join([f"storage {args.storage}", *verdict_lines(summary["most_trainable"])]))
    if args.wandb != "disabled":
        from rnncap.analysis.tracking import log_studies

        log_studies(study_runs(studies), args.experiment, args.wandb)


def cmd_precision(args: argparse.Namespace) -> None:
    from rnncap.analysis.precision import PRECISIONS
    from rnncap.analysis.rescore import NotACapacityRun, rescore

    for root in args.runs:
        _folder(root, "--runs")
    unknown = [p for p in args.precisions if p not in PRECISIONS]
    if unknown:
        allowed = list(PRECISIONS)
        raise UsageError(f"--precisions {' '.join(unknown)}: unknown; choose from {allowed}")
    try:
        result = rescore(args.runs, args.out, args.precisions, args.cell_configs)
    except NotACapacityRun as err:
        what = "precision re-scores finished capacity runs"
        raise UsageError(f"--runs: {_one_line(err)}; {what}") from err
    print(json.dumps(result, indent=2))


# ---- DVC experiments -------------------------------------------------------------------------
def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (what ``dvc exp run --set-param`` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def param_overrides(new: dict, old: dict, prefix: str = "") -> list[str]:
    """Hydra overrides that turn params ``old`` into ``new``: changed leaves, ``++`` for new
    keys, ``~`` for removed ones."""
    overrides = []
    for key, value in new.items():
        path = f"{prefix}{key}"
        if key not in old:
            overrides.append(f"++{path}={hydra_value(value)}")
        elif isinstance(value, dict) and isinstance(old[key], dict):
            overrides += param_overrides(value, old[key], f"{path}.")
        elif value != old[key]:
            overrides.append(f"{path}={hydra_value(value)}")
    overrides += [f"~{prefix}{key}" for key in old if key not in new]
    return overrides


def _params(path: Path, option: str) -> dict:
    import yaml

    try:
        params = yaml.safe_load(_file(path, option).read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{option} {path}: not YAML ({_one_line(err)})") from err
    if not isinstance(params, dict):
        raise UsageError(f"{option} {path}: not a params file (a YAML mapping)")
    return params


def cmd_exp_params(args: argparse.Namespace) -> None:
    new, old = _params(args.file, "FILE"), _params(args.base, "--base")
    for override in param_overrides(new, old):
        print(shlex.quote(f"--set-param={override}"))


# ---- the parser ------------------------------------------------------------------------------
class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; each option's default after its help."""


def _command(
    sub: argparse._SubParsersAction, name: str, run: Callable, doc: str
) -> argparse.ArgumentParser:
    """A subcommand: its first docstring line is its one line in ``rnncap --help``."""
    first = doc.strip().splitlines()[0]
    parser = sub.add_parser(name, help=first, description=doc, formatter_class=_Formatter)
    parser.set_defaults(run=run)
    return parser


def _path(parser: argparse.ArgumentParser, flag: str, default: str, what: str, metavar="DIR"):
    parser.add_argument(flag, type=Path, default=Path(default), metavar=metavar, help=what)


def _config_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--config-dir", type=Path, default=Path("conf"), metavar="DIR", help=what)


def _cell_configs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cell-configs",
        type=Path,
        default=Path("results/configs/cell"),
        metavar="DIR",
        help="the composed cell configs (`rnncap generate cells DIR`): how figures show a cell",
    )


def _tracking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="default", help="W&B group")
    parser.add_argument(
        "--wandb",
        default="offline",
        choices=WANDB_MODES,
        help="W&B mode; online without an API key logs offline",
    )


GENERATE = """the files training runs read: data sets, composed cell configs

  rnncap generate data FILE [train.py overrides...]
      the task's generated sets, composed as `python train.py <overrides>` composes them;
      a run with task.data_file=FILE and the same task settings loads them (and refuses them
      when its settings differ)
  rnncap generate cells DIR
      DIR/<cell>.yaml per conf/cell option, `defaults` included (IRNN's = the RNN's + its
      differences): a training stage depends on its cell's file only
"""
FIT = """capacity and bits per parameter with fits and CIs; memory

Reads every metrics.json under --runs (and with --studies the finished trials of tuned Optuna
studies) and writes capacity.csv, fits.csv and memory.csv into --out and the metrics JSON.
Capacity of a model size = max of bits over its runs (all b and seeds); per cell (and depth)
the line capacity = slope * params through the origin (slope = bits per parameter) and the
log-log exponent; per-unit memory next to the theory max(0, (d - N) / d).
"""
PLOT = """the capacity and memory figures (PNG)

Reads the tables of `rnncap fit` and writes capacity_vs_params.png, bits_per_param.png and
memory_per_unit.png. Cells are drawn in the display order, label and colour of their
composed configs (--cell-configs).
"""
TRAIN_GRID = """a training grid of params.yaml as one `python train.py -m` run

capacity: a short search per (cell, depth, budget, seed) point, one Optuna study each, its
trials trained as populations (sweep=quick); memory: one run per (cell, depth, width, seed);
precision: the capacity grid (cells and depths as `precision.trained` narrows them) trained in
`precision.trained.precision` (bf16-mixed); distance: one run per (cell, depth, width, delay,
seed); counting: one run per (cell, depth, width, seed). A section capacity_<x> or memory_<x>
(or one with `kind: capacity|memory`) is a grid of that kind writing under results/<x>/train/.
One worker process per core (params.yaml `jobs`), so imports are paid per grid, not per run.
The DVC stages train_<section> call it (rnncap.train_grid).
"""

TUNE_GRID = """a trainability grid of params.yaml: tuner and random-settings studies

Each study group of the section (`curves`: a tuner study per cell and depth, the paper's
Figure 4; `random`: random settings per cell, depth and optimiser, Table 1) is one
`python train.py -m` run into the section's journal storage, its trials trained as
populations, `jobs` worker processes at once; a rerun resumes every study to its n_trials.
Points a cell cannot take (the +RNN at depth 1) are skipped with a note. Run it in the project
(where train.py and conf/ are).
"""
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
PRECISION = """capacity with the trained weights rounded to fewer bits

Every finished capacity run under --runs (its metrics.json, weights.pt and .hydra config) is
rebuilt member by member and scored again with its weights rounded to each precision: bf16,
fp16, int8 and int4 (symmetric, one scale per tensor or, _row, per output row), ternary; fp32
reproduces the run's own bits (summary.json counts fp32_mismatches). Writes scores.csv (per
member and precision), precision.csv (bits per parameter and per stored bit, per cell, depth,
training precision and format), precision.png and summary.json. A run of another task, or one
without saved weights, is refused before anything is written.
"""
EXP_PARAMS = """another params file's grid as `dvc exp run` arguments

Prints one --set-param=<override> per value in FILE that differs from --base (params.yaml),
shell-quoted, so that xargs passes them on. DVC records the values with the experiment (and
leaves them in the workspace's params.yaml, unless --temp or --queue runs it elsewhere):

  rnncap exp-params params-paper.yaml | xargs dvc exp run -n paper
"""
DISTANCE = """max memorisation distance per model size from task=distance runs

Per (cell, depth, width): the accuracy at each tested delay (best over seeds) and the max
distance, the largest delay d such that every tested delay <= d reaches --threshold (a
smaller delay that fails caps it, whatever larger delays do). Writes accuracy.csv,
max_distance.csv, max_distance.png (against units with the bound d <= N, one real number per
unit, and d / N, the share of that bound reached) and summary.json (DVC metrics).
"""
COUNTING = """counting generalisation from task=counting runs: accuracy against length

Per (cell, depth, width): per-step accuracy at the training length and at each test length
(mean over seeds, range beside it) and the saturation of the tanh/sigmoid outputs on the
longest strings. Writes long_accuracy.csv, counting.csv, long_accuracy.png (log length axis)
and summary.json (DVC metrics).
"""
DASHBOARD = """W&B views comparing an experiment group's runs, built from code

A workspace (every run of the group, grouped by cell and depth) and a report (a panel grid per
depth, each with its own filtered run set). Sections: Capacity (bits against parameters, bits
per parameter per cell; the report a grid per --depths), Per-unit memory (error and theory
against units), Trainability (best so far and running median of the objective against trial
per cell, from `rnncap trainability`'s runs, a grid per depth in the report; share of
diverged settings), Tuning (parallel coordinates of the tuned settings) and the runs table.
With --wandb online and an API key it saves both and prints their URLs; otherwise it writes
their specs (JSON) to --out/workspace.json and --out/report.json and prints how to publish
them later (--spec FILE... --wandb online). It never prompts.
"""


def cmd_dashboard(args: argparse.Namespace) -> None:
    from rnncap.analysis import dashboard
    from rnncap.analysis.tracking import can_publish, how_to_publish, save_view

    if args.spec:
        views = []
        for spec in args.spec:
            try:
                views.append(dashboard.from_spec(_file(spec, "--spec").read_text()))
            except ValueError as err:
                raise UsageError(f"--spec {spec}: not a workspace or report spec ({err})") from None
        if not can_publish(args.wandb):
            print(how_to_publish(args.spec, args.wandb).replace("wrote", "kept", 1))
        for view in views if can_publish(args.wandb) else []:
            print(save_view(view))
        return
    if not args.project:
        raise UsageError("--project is required: the W&B project of the runs (e.g. rnncap)")
    if not args.group:
        raise UsageError("--group must name the experiment group (train.py experiment_name)")
    for depth in args.depths:
        _positive("--depths", depth)
    views = {
        "workspace": dashboard.build_workspace(
            args.entity, args.project, args.group, args.objective
        ),
        "report": dashboard.build_report(
            args.entity, args.project, args.group, args.depths, args.objective, args.table_sampler
        ),
    }
    if can_publish(args.wandb):
        for view in views.values():
            print(save_view(view))
        return
    from rnncap.base.io import write_atomic

    specs = {args.out / f"{kind}.json": dashboard.to_spec(view) for kind, view in views.items()}
    for path, text in specs.items():  # both built before either is written
        write_atomic(path, lambda f, text=text: f.write(text))
    print(how_to_publish(list(specs), args.wandb))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnncap",
        description="Capacity and trainability of recurrent networks: everything besides "
        "training (python train.py).",
        epilog="`rnncap COMMAND --help` describes a command.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    gen = _command(sub, "generate", cmd_generate, GENERATE)
    _config_dir(gen, "the Hydra config dir, composed as train.py composes it")
    what = gen.add_subparsers(dest="what", metavar="WHAT", required=True)
    data = what.add_parser("data", help="a task's data sets, for task.data_file")
    data.add_argument("out", type=Path, metavar="FILE", help="the data file to write (.pt)")
    data.add_argument("overrides", nargs="*", help="train.py overrides, e.g. task.samples=400")
    cells = what.add_parser("cells", help="every cell's composed config")
    cells.add_argument("out", type=Path, metavar="DIR", help="the folder for <cell>.yaml")

    fit = _command(sub, "fit", cmd_fit, FIT)
    _path(fit, "--runs", "results/train", "the run folders (a metrics.json each), recursively")
    _path(fit, "--out", "results/capacity", "where capacity.csv, fits.csv and memory.csv go")
    _path(fit, "--metrics", "results/capacity.json", "the summary JSON (DVC metrics)", "FILE")
    fit.add_argument("--boot", type=int, default=2000, metavar="N", help="bootstrap resamples")
    fit.add_argument(
        "--studies",
        nargs="*",
        default=[],
        metavar="URL",
        help="Optuna storages (sqlite:///...) whose trials join the runs",
    )
    _tracking(fit)
    _cell_configs(fit)

    plot = _command(sub, "plot", cmd_plot, PLOT)
    _path(plot, "--tables", "results/capacity", "the tables of rnncap fit")
    _path(plot, "--out", "results/figures", "where the figures go")
    _tracking(plot)
    _cell_configs(plot)

    train = _command(sub, "train-grid", cmd_train_grid, TRAIN_GRID)
    what = "which grid of --params: capacity, memory, precision, distance, counting, or a "
    what += "section capacity_*|memory_* (or one with kind: capacity|memory), e.g. capacity_beyond"
    train.add_argument("grid", metavar="SECTION", help=what)
    _path(train, "--params", "params.yaml", "the params file holding the grid", "FILE")
    train.add_argument("--dry-run", action="store_true", help="print the commands only")

    dist = _command(sub, "distance", cmd_distance, DISTANCE)
    _path(dist, "--runs", "results/runs/distance", "the task=distance runs, recursively")
    _path(dist, "--out", "results/distance", "where the tables, figure and summary go")
    dist.add_argument(
        "--threshold", type=float, default=0.9, metavar="T", help="accuracy a delay must reach"
    )
    _cell_configs(dist)

    count = _command(sub, "counting", cmd_counting, COUNTING)
    _path(count, "--runs", "results/runs/counting", "the task=counting runs, recursively")
    _path(count, "--out", "results/counting", "where the tables, figure and summary go")
    _cell_configs(count)

    tune = _command(sub, "tune-grid", cmd_tune_grid, TUNE_GRID)
    _path(tune, "--params", "params.yaml", "the params file that holds the grid", "FILE")
    tune.add_argument(
        "--section",
        default="tune",
        metavar="NAME",
        help="its section: tune (parentheses) or tune_arithmetic; default %(default)s",
    )
    tune.add_argument("--dry-run", action="store_true", help="print the commands only")

    report = _command(sub, "trainability", cmd_trainability, TRAINABILITY)
    arg = report.add_argument
    arg(
        "--storage",
        default=argparse.SUPPRESS,  # none given: rnncap.analysis.trainability.default_storage
        metavar="URL",
        help="the Optuna storage of the studies (sqlite:///, journal:/// or a database URL); "
        "default: the tune stage's journal:///results/tune/trainability.log if it exists, else "
        "the sweeper's sqlite:///results/tune/studies.db",
    )
    arg(
        "--diverged",
        choices=("nonfinite", "loss_above_start"),
        default="nonfinite",
        help="what makes a trial infeasible on the curves and in percent_infeasible: a "
        "non-finite loss, or also a final training loss above the first (the paper's); "
        "the table shows both; default %(default)s",
    )
    _path(report, "--out", "results/trainability", "where the report goes")
    arg(
        "--curve-sampler",
        metavar="NAME",
        help="curves of this sampler's studies only, e.g. GPSampler; default: every study "
        "not of --table-sampler",
    )
    arg(
        "--table-sampler",
        default="RandomSampler",
        metavar="NAME",
        help="the sampler of the percent-infeasible studies",
    )
    arg(
        "--depths",
        type=int,
        nargs="+",
        default=[1, 8],
        metavar="D",
        help="the depths of the percent-infeasible table",
    )
    _tracking(report)
    _cell_configs(report)

    rescore = _command(sub, "precision", cmd_precision, PRECISION)
    rescore.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("results/train/capacity"), Path("results/precision/train")],
        metavar="DIR",
        help="folders of finished capacity runs; default: the fp32 grid and the bf16-mixed one",
    )
    _path(rescore, "--out", "results/precision", "where the tables and figure go")
    rescore.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16", "fp16", "int8", "int8_row", "int4", "int4_row", "ternary"],
        metavar="NAME",
        help="the formats to score (default: all)",
    )
    _cell_configs(rescore)

    dash = _command(sub, "dashboard", cmd_dashboard, DASHBOARD)
    dash.add_argument("--project", metavar="NAME", help="the W&B project of the runs (required)")
    dash.add_argument(
        "--entity",
        default=os.environ.get("WANDB_ENTITY", ""),
        metavar="NAME",
        help="the W&B entity (default $WANDB_ENTITY, else the API key's)",
    )
    dash.add_argument("--group", default="default", help="the experiment group (W&B group)")
    dash.add_argument("--objective", default="bits", help="the tuned metric (final/<key>)")
    dash.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        metavar="D",
        help="the report's depths: a capacity and a trainability panel grid each",
    )
    dash.add_argument(
        "--table-sampler",
        default="RandomSampler",
        metavar="NAME",
        help="the sampler of the random-settings studies (the rest are tuner curves)",
    )
    _path(dash, "--out", "results/dashboard", "where workspace.json and report.json go (offline)")
    dash.add_argument(
        "--spec", type=Path, nargs="+", metavar="FILE", help="publish these specs instead"
    )
    dash.add_argument(
        "--wandb", default="offline", choices=WANDB_MODES, help="online saves (with a key)"
    )

    exp = _command(sub, "exp-params", cmd_exp_params, EXP_PARAMS)
    exp.add_argument("file", type=Path, metavar="FILE", help="the params file to run")
    _path(exp, "--base", "params.yaml", "the params file the experiment starts from", "FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, ConfigError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
