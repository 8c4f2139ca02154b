"""The training grids of ``params.yaml`` as ``python train.py -m`` runs: one process for all
of a grid's points, one worker process per core (``hydra/launcher=joblib``), so that torch and
Lightning are imported a few times per grid, not once per run.

- ``capacity``: a search per (cell, depth, budget, seed) point (``capacity.search.sweep``, one
  Optuna study per point through ``hydra.sweeper.grid``), its trials trained as populations;
  a point's capacity is the maximum of bits over its trials (``rnncap fit``). Points a cell
  cannot take (the +RNN at depth 1) are skipped.
- ``memory``: one run per (cell, depth, width, seed), Hydra's grid sweep; the cells that need
  depth >= 2 (``deep_cells``) at ``deep_depths``.
- ``precision``: the capacity grid again (``precision.trained`` may narrow its cells and
  depths), trained in Lightning's ``precision.trained.precision`` (bf16-mixed), for the
  comparison of ``rnncap precision``.
- ``distance``: one run per (cell, depth, width, delay, seed) of ``task=distance``, the cells
  and deep cells as in ``memory``; ``rnncap distance`` turns the delays into a max distance.
- ``counting``: one run per (cell, depth, width, seed) of ``task=counting``, trained on
  ``task.train_length`` and tested on ``task.test_lengths`` (``rnncap counting``).

A capacity or memory section's kind is its ``kind`` key, else the start of its name:
``capacity_beyond`` is a capacity grid, ``memory_beyond`` a memory grid (the new cells, a named
extra target). The ``capacity`` and ``memory`` sections write under ``results/train/<kind>``,
a section ``<kind>_<suffix>`` under ``results/<suffix>/train/<kind>``; the precision grid under
``results/precision/train``, the distance and counting grids under ``results/runs/<grid>``:
all outside results/train but the default two (``fit`` reads, and depends on, all of it).

``rnncap train-grid <section> [--params FILE] [--dry-run]`` runs one from the project root;
the DVC stages ``train_<section>`` call it.
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
        *([] if search.get("seed") is None else [f"hydra.sweeper.sampler.seed={search['seed']}"]),
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
    return [
        [
            "-m",
            "task=memory",
            f"cell={hydra_list(cells)}",
            f"depth={hydra_list(depths)}",
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
        for cells, depths in cell_groups(grid)
    ]


def override_value(value: Any) -> str:
    """A task setting as a Hydra override value: a list without spaces, ``[40,200]``."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def cell_groups(grid: Mapping[str, Any]) -> list[tuple[list[str], list[int]]]:
    """(cells, depths) of a grid: ``cells`` x ``depths``, then ``deep_cells`` x ``deep_depths``
    (cells such as the +RNN that need depth >= 2); an empty group is left out."""
    groups = [(grid["cells"], grid["depths"]), (grid["deep_cells"], grid["deep_depths"])]
    return [(list(cells), list(depths)) for cells, depths in groups if cells and depths]


# each task grid's sweep axis beyond cell, depth, width and seed, and its run folder's name
TASK_SWEEPS = {
    "distance": (
        "task.delay",
        "delays",
        "${cell.name}-d${depth}-n${model.hidden}-delay${task.delay}-s${seed}",
    ),
    "counting": (None, None, "${cell.name}-d${depth}-n${model.hidden}-s${seed}"),
}


def task_commands(grid: Mapping[str, Any], task: str, jobs: int, out: str) -> list[list[str]]:
    """The ``train.py -m`` commands of a ``distance`` or ``counting`` grid: one per cell
    group, one run per (cell, depth, width[, delay], seed), under ``out/<subdir>``."""
    key, values, subdir = TASK_SWEEPS[task]
    train = grid["train"]
    sweep = [f"{key}={hydra_list(grid[values])}"] if key else []
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
            *parallel(jobs),
            f"hydra.sweep.dir={out}",
            f"hydra.sweep.subdir={subdir}",
            *RUN,
            *split_overrides(train.get("overrides")),
        ]
        for cells, depths in cell_groups(grid)
    ]


# the runs of the grids named by their task or purpose (the DVC stage's output): outside
# results/train, which the fit stage reads (and depends on) whole, so that `dvc repro plot`
# never trains them
NAMED_OUT = {
    "precision": "results/precision/train",
    "distance": "results/runs/distance",
    "counting": "results/runs/counting",
}


def precision_grid(params: Path) -> tuple[dict[str, Any], int]:
    """The capacity grid as ``precision.trained`` narrows it, trained in its precision."""
    grid, jobs = load_section(params, "capacity")
    trained, _ = load_section(params, "precision")
    trained = trained["trained"]
    narrowed = {k: trained[k] for k in ("cells", "depths") if trained.get(k) is not None}
    overrides = f"{grid.get('overrides') or ''} hardware.precision={trained['precision']}"
    return {**grid, **narrowed, "overrides": overrides.strip()}, jobs


KINDS = ("capacity", "memory")


def grid_kind(name: str, grid: Mapping[str, Any]) -> str:
    """``capacity`` or ``memory``: the section's ``kind`` key, else the start of its name."""
    kind = grid.get("kind") or next(
        (k for k in KINDS if name == k or name.startswith(f"{k}_")), None
    )
    if kind not in KINDS:
        raise ValueError(
            f"section `{name}` is no training grid: name it capacity_* or memory_*, or give it "
            f"kind: capacity|memory (got kind={kind!r}); the other grids: {list(NAMED_OUT)}"
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
    if name == "precision":
        grid, jobs = precision_grid(params)
        return [capacity_command(grid, jobs, NAMED_OUT[name])]
    grid, jobs = load_section(params, name)
    if name in TASK_SWEEPS:
        return task_commands(grid, name, jobs, NAMED_OUT[name])
    kind = grid_kind(name, grid)
    if kind == "capacity":
        return [capacity_command(grid, jobs, grid_out(name, kind))]
    return memory_commands(grid, jobs, grid_out(name, kind), "data/memory")


def grid_folder(params: Path, name: str) -> str:
    """The folder grid ``name`` of ``params`` writes its runs to."""
    if name in NAMED_OUT:
        return NAMED_OUT[name]
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
