"""The tuning grid of ``params.yaml`` (key ``tune``): one Optuna study per sampler, cell and
depth, each a ``python train.py -m sweep=<sampler> ...`` process writing into one storage.

A study group may set its own ``task`` and ``budget`` (else the top-level ones apply); the
top-level ``overrides`` go to every trial, a group's ``overrides`` after them (each one string
of train.py overrides, as everywhere in params.yaml). Rerunning resumes every study to its
``n_trials`` (the sweeper counts finished trials). Invalid combinations (the +RNN at depth 1,
which the paper excludes) are skipped with a note. ``rnncap tune-grid [--params params.yaml]
[--dry-run]`` runs it from the project root (where train.py and conf/ are).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rnncap.core.command_line import split_overrides


def load_grid(params: Path) -> dict[str, Any]:
    """The ``tune`` section of a params file, interpolations resolved."""
    tune = OmegaConf.load(params).get("tune")
    if tune is None:
        raise ValueError(f"{params} has no `tune` section (the tuning grid)")
    return OmegaConf.to_container(tune, resolve=True)


def sweep_commands(tune: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """(label, train.py overrides) per study of the grid, in params order."""
    for sampler, grid in tune["studies"].items():
        for cell in grid["cells"]:
            for depth in grid["depths"]:
                overrides = [
                    f"sweep={sampler}",
                    f"cell={cell}",
                    f"depth={depth}",
                    f"task={grid.get('task', tune.get('task'))}",
                    f"model.budget={grid.get('budget', tune.get('budget'))}",
                    *split_overrides(tune.get("overrides")),
                    *split_overrides(grid.get("overrides")),
                    f"hydra.sweeper.n_trials={grid['n_trials']}",
                    f"hydra.sweeper.storage=sqlite:///{tune['storage']}",
                    f"hydra.sweep.dir={tune['runs']}/{sampler}-{cell}-d{depth}",
                ]
                yield f"{sampler} {cell} depth {depth}", overrides


def invalid_reason(overrides: list[str], config_dir: Path = Path("conf")) -> str | None:
    """The validation error of the composed run config, or None when it is valid."""
    from hydra import compose, initialize_config_dir

    from rnncap.core.errors import ConfigError
    from rnncap.core.validate import validate

    plain = [o for o in overrides if not o.startswith(("hydra.", "sweep="))]
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = compose("train", overrides=plain)
    try:
        validate(cfg)
    except ConfigError as err:
        return str(err)
    return None


def run_grid(tune: Mapping[str, Any], root: Path = Path("."), dry_run: bool = False) -> None:
    """Run (or with ``dry_run`` only print) every valid study's sweep, one after another, with
    ``root``'s train.py and conf/."""
    for label, overrides in sweep_commands(tune):
        if reason := invalid_reason(overrides, root / "conf"):
            print(f"skip {label}: {reason}", flush=True)
            continue
        cmd = [sys.executable, str(root / "train.py"), "-m", *overrides]
        print(f"run {label}: {' '.join(cmd[2:])}", flush=True)
        if not dry_run:
            subprocess.run(cmd, check=True)
