"""The training grids of ``params.yaml`` as ``python train.py -m`` runs: one process for all
of a grid's points, one worker process per core (``hydra/launcher=joblib``), so that torch and
Lightning are imported a few times per grid, not once per run.

- ``capacity``: a search per (cell, depth, budget, seed) point (``capacity.search.sweep``, one
  Optuna study per point through ``hydra.sweeper.grid``), its trials trained as populations;
  a point's capacity is the maximum of bits over its trials (``rnncap fit``). Points a cell
  cannot take (the +RNN at depth 1) are skipped.
- ``memory``: one run per (cell, depth, width, seed), Hydra's grid sweep; the cells that need
  depth >= 2 (``deep_cells``) at ``deep_depths``.

A section's kind is its ``kind`` key, else the start of its name: ``capacity_beyond`` is a
capacity grid, ``memory_beyond`` a memory grid (the new cells, a named extra target). The
``capacity`` and ``memory`` sections write under ``results/train/<kind>``, a section
``<kind>_<suffix>`` under ``results/<suffix>/train/<kind>``.

``rnncap train-grid <section> [--params FILE] [--dry-run]`` runs one from the project root;
the DVC stages ``train_capacity``, ``train_memory`` (and ``train_*_beyond``) call it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rnncap.core.command_line import split_overrides

RUN = ["trainer.checkpoint_every=null", "trainer.enable_progress_bar=false"]


def hydra_list(values: Sequence[Any]) -> str:
    """[1, 2] -> "1,2": a Hydra sweep over the values."""
    return ",".join(str(v) for v in values)


def load_section(params: Path, name: str) -> tuple[dict[str, Any], int]:
    """(the ``name`` section of a params file, the ``jobs`` processes at once)."""
    node = OmegaConf.to_container(OmegaConf.load(params), resolve=True)
    if name not in node:
        raise ValueError(f"{params} has no `{name}` section")
    return node[name], int(node.get("jobs", 1))


def parallel(jobs: int) -> list[str]:
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]


def capacity_command(grid: Mapping[str, Any], jobs: int, out: str) -> list[str]:
    """The capacity grid's one ``train.py -m`` command (its arguments after ``train.py``)."""
    search, task = grid["search"], grid["task"]
    return [
        "-m",
        f"sweep={search['sweep']}",
        "task=capacity",
        f"cell={hydra_list(grid['cells'])}",
        f"depth={hydra_list(grid['depths'])}",
        f"model.budget={hydra_list(grid['budgets'])}",
        f"seed={hydra_list(grid['seeds'])}",
        "hydra.sweeper.grid=[cell,depth,model.budget,seed]",
        f"hydra.sweeper.n_trials={search['trials']}",
        f"hydra.sweeper.population={search['population']}",
        f"hydra.sweeper.pruner={search['pruner'] or 'null'}",
        *split_overrides(search.get("pruner_args")),
        f"trainer.val_check_interval={search['val_check_interval']}",
        *([] if search["max_steps"] is None else [f"trainer.max_steps={search['max_steps']}"]),
        *parallel(jobs),
        f"hydra.sweeper.n_jobs={jobs}",
        f"hydra.sweeper.storage=journal:///{out}/studies.log",
        f"hydra.sweep.dir={out}",
        f"task.input_dim={task['input_dim']}",
        f"task.steps={task['steps']}",
        *RUN,
        *split_overrides(grid.get("overrides")),
    ]


def memory_commands(grid: Mapping[str, Any], jobs: int, out: str, data: str) -> list[list[str]]:
    """The memory grid's ``train.py -m`` commands: the cells, then the deep cells."""
    task, train = grid["task"], grid["train"]
    commands = []
    for cells, depths in (("cells", "depths"), ("deep_cells", "deep_depths")):
        if not grid[cells] or not grid[depths]:
            continue
        commands.append(
            [
                "-m",
                "task=memory",
                f"cell={hydra_list(grid[cells])}",
                f"depth={hydra_list(grid[depths])}",
                f"model.hidden={hydra_list(grid['widths'])}",
                f"seed={hydra_list(grid['seeds'])}",
                f"task.data_file={data}/s${{seed}}.pt",
                *(f"task.{k}={v}" for k, v in task.items()),
                f"trainer.max_steps={train['max_steps']}",
                f"optimizer.lr={train['lr']}",
                *parallel(jobs),
                f"hydra.sweep.dir={out}",
                "hydra.sweep.subdir=${cell.name}-d${depth}-n${model.hidden}-s${seed}",
                *RUN,
                *split_overrides(train.get("overrides")),
            ]
        )
    return commands


KINDS = ("capacity", "memory")


def grid_kind(name: str, grid: Mapping[str, Any]) -> str:
    """``capacity`` or ``memory``: the section's ``kind`` key, else the start of its name."""
    kind = grid.get("kind") or next(
        (k for k in KINDS if name == k or name.startswith(f"{k}_")), None
    )
    if kind not in KINDS:
        raise ValueError(
            f"section `{name}` is no training grid: name it capacity_* or memory_*, or give it "
            f"kind: capacity|memory (got kind={kind!r})"
        )
    return kind


def grid_out(name: str, kind: str) -> str:
    """Where grid ``name`` of ``kind`` writes its runs (the DVC stage's output):
    results/train/<kind>, or results/<suffix>/train/<kind> for a section <kind>_<suffix>."""
    if name == kind:
        return f"results/train/{kind}"
    return f"results/{name.removeprefix(f'{kind}_')}/train/{kind}"


def grid_commands(params: Path, name: str) -> list[list[str]]:
    """Every ``train.py`` argument list of grid ``name`` of ``params``."""
    grid, jobs = load_section(params, name)
    kind = grid_kind(name, grid)
    if kind == "capacity":
        return [capacity_command(grid, jobs, grid_out(name, kind))]
    return memory_commands(grid, jobs, grid_out(name, kind), "data/memory")


def grid_folder(params: Path, name: str) -> str:
    """The folder grid ``name`` of ``params`` writes its runs to."""
    grid, _ = load_section(params, name)
    return grid_out(name, grid_kind(name, grid))


def run_grid(
    commands: list[list[str]], out: str, root: Path = Path("."), dry_run: bool = False
) -> None:
    """Run (or with ``dry_run`` only print) each command with ``root``'s train.py; the grid's
    folder ``out`` exists afterwards even when the grid is empty."""
    if not dry_run:
        (root / out).mkdir(parents=True, exist_ok=True)
    for args in commands:
        cmd = [sys.executable, str(root / "train.py"), *args]
        print(f"run: python train.py {' '.join(args)}", flush=True)
        if not dry_run:
            subprocess.run(cmd, check=True)
