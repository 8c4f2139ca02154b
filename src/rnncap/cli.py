"""``rnncap``: the command line of everything besides training (``python train.py``).

    rnncap train-grid NAME [--params FILE] [--dry-run]   train grid NAME of params.yaml
    rnncap analyse NAME [--params FILE]                  analyse its runs into its report
    rnncap summary NAME [--params FILE]                  its report's summary as a table
    rnncap generate data FILE [train.py overrides...]    a task's data sets, for task.data_file
    rnncap generate cells DIR                            every cell's composed config
    rnncap exp-params FILE | xargs dvc exp run           FILE's grids as a DVC experiment
    rnncap dashboard [--project P] --group G             W&B workspace and report
    rnncap <experiment command> ...                      fit, plot, precision, distance, ...

The experiments (``rnncap.experiments``, one module each) declare their grids, analyses and
commands; this module discovers them and adds their commands. Modules are imported by the
subcommand that needs them, so ``--help`` loads no torch. Bad input ends the command with one
line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnncap.base.errors import ConfigError
from rnncap.experiments import Experiment, Grid, discover, load_grid
from rnncap.experiments.options import (
    WANDB_MODES,
    UsageError,
    file,
    folder,
    one_line,
    path,
    positive,
)


# ---- generate --------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> None:
    from hydra.errors import HydraException

    from rnncap.core.validate import compose_error
    from rnncap.generate import generate, write_cell_configs

    folder(args.config_dir, "--config-dir")
    if args.what == "cells":
        folder(args.config_dir / "cell", "--config-dir")
        paths = write_cell_configs(args.out, args.config_dir)
        print(f"wrote {len(paths)} cell configs into {args.out}")
        return
    try:
        key = generate(args.out, args.overrides, args.config_dir)
    except HydraException as err:  # a refused value in one line, else Hydra's message
        line = compose_error(err) or f"overrides {' '.join(args.overrides)}: {one_line(err)}"
        raise UsageError(line) from err
    print(f"wrote {args.out}: {key}")


# ---- grids: train, analyse, summarise ------------------------------------------------------
def grid_of(args: argparse.Namespace) -> tuple[Grid, Experiment]:
    """(the grid ``args.grid`` of ``args.params``, its experiment), as one line when missing."""
    file(args.params, "--params")
    try:
        return load_grid(args.params, args.grid)
    except (ValueError, KeyError) as err:
        raise UsageError(f"--params {args.params}: {one_line(err)}") from err


def in_project(command: str) -> None:
    if not Path("train.py").is_file() or not Path("conf").is_dir():
        raise UsageError(f"train.py and conf/ are not here: run rnncap {command} in the project")


def run_commands(commands: list[list[str]], dry_run: bool = False) -> None:
    """Run (or with ``dry_run`` only print) ``rnncap`` commands, each argv in this process."""
    for argv in commands:
        print(f"run: rnncap {shlex.join(argv)}", flush=True)
        if not dry_run:
            command = build_parser().parse_args(argv)
            command.run(command)


def cmd_train_grid(args: argparse.Namespace) -> None:
    from rnncap.train_grid import run_grid

    grid, experiment = grid_of(args)
    in_project("train-grid")
    try:
        prepare = [] if experiment.prepare is None else experiment.prepare(grid)
        commands = experiment.expand(grid)
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--params {args.params}: grids.{grid.name}: {one_line(err)}") from err
    try:
        run_commands(prepare, args.dry_run)
        run_grid(commands, grid.runs, Path("."), args.dry_run)
    except subprocess.CalledProcessError as err:
        print(f"error: python {shlex.join(map(str, err.cmd[1:]))} failed", file=sys.stderr)
        sys.exit(err.returncode)


def cmd_analyse(args: argparse.Namespace) -> None:
    grid, experiment = grid_of(args)
    run_commands(experiment.analyse(grid), args.dry_run)
    missing = [name for name in experiment.outputs if not (grid.report / name).is_file()]
    if missing and not args.dry_run:  # a report that lacks a declared output is not finished
        raise UsageError(f"analyse {grid.name}: {grid.report} lacks {', '.join(missing)}")


def cmd_summary(args: argparse.Namespace) -> None:
    import json

    grid, experiment = grid_of(args)
    found = grid.report / "summary.json"
    if not found.is_file():
        raise UsageError(f"{found}: no such file (rnncap analyse {grid.name} writes it)")
    result = json.loads(found.read_text())
    if experiment.summary is not None:
        print(f"{found} (rnncap analyse {grid.name}):")
        print(experiment.summary(result))
        return
    for key, value in result.items():
        print(f"  {key}: {json.dumps(value)}")


# ---- DVC experiments ---------------------------------------------------------------------
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
        params = yaml.safe_load(file(path, option).read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{option} {path}: not YAML ({one_line(err)})") from err
    if not isinstance(params, dict):
        raise UsageError(f"{option} {path}: not a params file (a YAML mapping)")
    return params


def cmd_exp_params(args: argparse.Namespace) -> None:
    new, old = _params(args.file, "FILE"), _params(args.base, "--base")
    for override in param_overrides(new, old):
        print(shlex.quote(f"--set-param={override}"))


TRAIN_GRID = """train a grid of params.yaml: its `python train.py -m` runs

The grid's experiment (grids.NAME.experiment, a module of rnncap.experiments) expands its entry
into runs, written under results/NAME/runs; one worker process per core (params `jobs`), so
imports are paid per grid, not per run. The DVC stages train@NAME call it. Run it in the
project (where train.py and conf/ are). The experiments: {experiments}.
"""
ANALYSE = """analyse a grid's runs into results/NAME/report (tables, figures, summary.json)

Runs the analysis commands of the grid's experiment (printed first); the DVC stages
analyse@NAME call it.
"""
SUMMARY = """a grid's results/NAME/report/summary.json as a readable table"""
GENERATE = """the files training runs read: data sets, composed cell configs

  rnncap generate data FILE [train.py overrides...]
      the task's generated sets, composed as `python train.py <overrides>` composes them;
      a run with task.data_file=FILE and the same task settings loads them (and refuses them
      when its settings differ)
  rnncap generate cells DIR
      DIR/<cell>.yaml per conf/cell option, `defaults` included (IRNN's = the RNN's + its
      differences): a training stage depends on its cell's file only
"""
EXP_PARAMS = """another params file's grid as `dvc exp run` arguments

Prints one --set-param=<override> per value in FILE that differs from --base (params.yaml),
shell-quoted, so that xargs passes them on. DVC records the values with the experiment (and
leaves them in the workspace's params.yaml, unless --temp or --queue runs it elsewhere):

  rnncap exp-params params-paper.yaml | xargs dvc exp run -n paper
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


def group_has_runs(args: argparse.Namespace, online: bool) -> bool:
    """Whether a W&B run of ``args.group`` exists: online, in the project; offline, among the
    run files under ``args.runs_dir`` (each ``run-*.wandb`` records its group as the RunRecord
    field ``run_group``, a length-prefixed string)."""
    if online:
        import wandb

        api = wandb.Api()
        found = api.runs(f"{args.entity or api.default_entity}/{args.project}",
                         filters={"group": args.group}, per_page=1)  # fmt: skip
        return len(found) > 0
    from wandb.proto.wandb_internal_pb2 import RunRecord

    field = RunRecord.DESCRIPTOR.fields_by_name["run_group"].number
    group, length = args.group.encode(), b""
    size = len(group)
    while True:  # the protobuf varint of the length
        length += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            break
    needle = bytes([field << 3 | 2]) + length + group
    runs = args.runs_dir.rglob("run-*.wandb") if args.runs_dir.is_dir() else []
    return any(needle in run.read_bytes() for run in runs)


def cmd_dashboard(args: argparse.Namespace) -> None:
    from rnncap.analysis import dashboard
    from rnncap.analysis.tracking import can_publish, how_to_publish, save_view

    if args.spec:
        views = []
        for spec in args.spec:
            try:
                views.append(dashboard.from_spec(file(spec, "--spec").read_text()))
            except ValueError as err:
                raise UsageError(f"--spec {spec}: not a workspace or report spec ({err})") from None
        if not can_publish(args.wandb):
            print(how_to_publish(args.spec, args.wandb).replace("wrote", "kept", 1))
        for view in views if can_publish(args.wandb) else []:
            print(save_view(view))
        return
    if not args.group:
        raise UsageError("--group must name the experiment group (train.py experiment_name)")
    for depth in args.depths:
        positive("--depths", depth)
    where = f"project {args.project}" if can_publish(args.wandb) else f"{args.runs_dir}/"
    if not group_has_runs(args, can_publish(args.wandb)):
        raise UsageError(f"--group {args.group}: no W&B run of this group in {where}")
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
    for spec, text in specs.items():  # both built before either is written
        write_atomic(spec, lambda f, text=text: f.write(text))
    print(how_to_publish(list(specs), args.wandb))


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


def _grid(parser: argparse.ArgumentParser, dry_run: str | None = None) -> None:
    parser.add_argument("grid", metavar="NAME", help="the grid: an entry of `grids` in --params")
    path(parser, "--params", "params.yaml", "the params file holding the grid", "FILE")
    if dry_run:
        parser.add_argument("--dry-run", action="store_true", help=dry_run)


def _generate(sub: argparse._SubParsersAction) -> None:
    gen = _command(sub, "generate", cmd_generate, GENERATE)
    path(gen, "--config-dir", "conf", "the Hydra config dir, composed as train.py composes it")
    what = gen.add_subparsers(dest="what", metavar="WHAT", required=True)
    data = what.add_parser("data", help="a task's data sets, for task.data_file")
    data.add_argument("out", type=Path, metavar="FILE", help="the data file to write (.pt)")
    data.add_argument("overrides", nargs="*", help="train.py overrides, e.g. task.samples=400")
    cells = what.add_parser("cells", help="every cell's composed config")
    cells.add_argument("out", type=Path, metavar="DIR", help="the folder for <cell>.yaml")


def _dashboard(sub: argparse._SubParsersAction) -> None:
    dash = _command(sub, "dashboard", cmd_dashboard, DASHBOARD)
    arg = dash.add_argument
    arg("--project", default="rnncap", metavar="NAME", help="the W&B project of the runs")
    arg("--entity", default=os.environ.get("WANDB_ENTITY", ""), metavar="NAME",
        help="the W&B entity (default $WANDB_ENTITY, else the API key's)")  # fmt: skip
    arg("--group", default="default", help="the experiment group (W&B group)")
    arg("--objective", default="bits", help="the tuned metric (final/<key>)")
    arg("--depths", type=int, nargs="+", default=[1, 2, 4, 8], metavar="D",
        help="the report's depths: a capacity and a trainability panel grid each")  # fmt: skip
    arg("--table-sampler", default="RandomSampler", metavar="NAME",
        help="the sampler of the random-settings studies (the rest are tuner curves)")  # fmt: skip
    path(dash, "--out", "results/dashboard", "where workspace.json and report.json go (offline)")
    path(dash, "--runs-dir", "results", "where the offline W&B runs are (to find --group)")
    arg("--spec", type=Path, nargs="+", metavar="FILE", help="publish these specs instead")
    arg("--wandb", default="offline", choices=WANDB_MODES, help="online saves (with a key)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnncap",
        description="Capacity and trainability of recurrent networks: everything besides "
        "training (python train.py).",
        epilog="`rnncap COMMAND --help` describes a command.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    experiments = discover()
    names = ", ".join(sorted(experiments))
    _grid(_command(sub, "train-grid", cmd_train_grid, TRAIN_GRID.format(experiments=names)),
          "print the commands only")  # fmt: skip
    _grid(_command(sub, "analyse", cmd_analyse, ANALYSE), "print the commands only")
    _grid(_command(sub, "summary", cmd_summary, SUMMARY))
    for experiment in experiments.values():
        for command in experiment.commands:
            command.options(_command(sub, command.name, command.run, command.doc))
    _generate(sub)
    exp = _command(sub, "exp-params", cmd_exp_params, EXP_PARAMS)
    exp.add_argument("file", type=Path, metavar="FILE", help="the params file to run")
    path(exp, "--base", "params.yaml", "the params file the experiment starts from", "FILE")
    _dashboard(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, ConfigError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
