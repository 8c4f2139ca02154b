"""Experiments as data: each module here declares one experiment, ``EXPERIMENT = Experiment(...)``.

An experiment is what a grid of ``params.yaml`` (``grids.<name>``, its ``experiment`` key naming
the experiment) trains and how its runs are analysed:

- ``expand(grid)``: the grid's ``python train.py -m`` runs (their arguments after ``train.py``);
- ``prepare(grid)``: the ``rnncap`` commands that write what the runs read (data sets);
- ``analyse(grid)``: the ``rnncap`` commands that analyse the runs into ``grid.report``;
- ``commands``: its own ``rnncap`` subcommands, each with its options and what it runs.

Every grid writes one layout: ``results/<grid>/runs`` (``rnncap train-grid NAME``, the DVC
stage ``train@NAME``) and ``results/<grid>/report`` (tables, figures and ``summary.json``:
``rnncap analyse NAME``, the stage ``analyse@NAME``). ``discover()`` finds the experiments with
``pkgutil``: a new one is a module here, an entry in ``params.yaml`` and its test.

Importing this package, or an experiment module, loads no torch: a module imports at its top
only what expanding a grid needs, and its analysis code inside the commands that run it, so
``rnncap --help`` stays fast and a training stage does not depend on the analysis code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path("results")


@dataclass(frozen=True)
class Grid:
    """One ``grids.<name>`` entry of a params file, with the file's shared settings."""

    name: str
    settings: dict[str, Any]  # the entry, YAML merge keys resolved
    jobs: int = 1  # training processes at once (params ``jobs``)
    experiment_group: str = "default"  # the W&B group (params ``experiment``)
    wandb: str = "offline"  # W&B mode (params ``wandb``)

    @property
    def runs(self) -> Path:
        return RESULTS / self.name / "runs"

    @property
    def report(self) -> Path:
        return RESULTS / self.name / "report"

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


@dataclass(frozen=True)
class Command:
    """An ``rnncap`` subcommand: ``options(parser)`` adds its arguments, ``run(args)`` runs it;
    the first line of ``doc`` is its line in ``rnncap --help``."""

    name: str
    doc: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


@dataclass(frozen=True)
class Experiment:
    """What one kind of grid trains and how its runs are analysed (see the module docstring)."""

    name: str
    doc: str
    expand: Callable[[Grid], list[list[str]]]
    analyse: Callable[[Grid], list[list[str]]]
    commands: Sequence[Command] = ()
    prepare: Callable[[Grid], list[list[str]]] | None = None
    outputs: Sequence[str] = field(default_factory=tuple)  # files `analyse` must leave in report
    summary: Callable[[dict[str, Any]], str] | None = None  # summary.json as a readable table


def discover() -> dict[str, Experiment]:
    """Every experiment declared in this package, by name."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        experiment = getattr(module, "EXPERIMENT", None)
        if isinstance(experiment, Experiment):
            found[experiment.name] = experiment
    return found


def load_grid(params: Path, name: str) -> tuple[Grid, Experiment]:
    """Grid ``name`` of a params file and its experiment; ValueError names what is missing."""
    import yaml  # PyYAML resolves YAML merge keys (`<<: *defaults`), as DVC does

    node = yaml.safe_load(params.read_text()) or {}
    grids = node.get("grids") or {}
    if name not in grids:
        raise ValueError(f"no grid `{name}` under `grids`; choose one of {sorted(grids)}")
    settings = grids[name]
    experiments = discover()
    kind = settings.get("experiment")
    if kind not in experiments:
        raise ValueError(f"grids.{name}.experiment={kind!r}; choose one of {sorted(experiments)}")
    grid = Grid(
        name,
        settings,
        int(node.get("jobs", 1)),
        str(node.get("experiment", "default")),
        str(node.get("wandb", "offline")),
    )
    return grid, experiments[kind]


def grid_commands(params: Path, name: str) -> list[list[str]]:
    """Every ``train.py`` argument list of grid ``name`` of ``params``."""
    grid, experiment = load_grid(params, name)
    return experiment.expand(grid)
