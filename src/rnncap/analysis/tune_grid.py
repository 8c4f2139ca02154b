"""Run the tuning grid of ``params.yaml`` (key ``tune``): one Optuna study per sampler, cell and
depth, each a ``python train.py -m sweep=<sampler> ...`` process writing into one storage.

A study group may set its own ``task`` and ``budget`` (else the top-level ones apply); the
top-level ``overrides`` go to every trial, a group's ``overrides`` after them.
Rerunning resumes every study to its ``n_trials`` (the sweeper counts finished trials).
Invalid combinations (the +RNN at depth 1, which the paper excludes) are skipped with a note.
``python -m rnncap.analysis.tune_grid [--params params.yaml] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[3]


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
                    *tune.get("overrides", []),
                    *grid.get("overrides", []),
                    f"hydra.sweeper.n_trials={grid['n_trials']}",
                    f"hydra.sweeper.storage=sqlite:///{tune['storage']}",
                    f"hydra.sweep.dir={tune['runs']}/{sampler}-{cell}-d{depth}",
                ]
                yield f"{sampler} {cell} depth {depth}", overrides


def invalid_reason(overrides: list[str]) -> str | None:
    """The validation error of the composed run config, or None when it is valid."""
    from hydra import compose, initialize_config_dir

    from rnncap.core.errors import ConfigError
    from rnncap.core.validate import validate

    plain = [o for o in overrides if not o.startswith(("hydra.", "sweep="))]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=plain)
    try:
        validate(cfg)
    except ConfigError as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    tune = OmegaConf.to_container(OmegaConf.load(args.params).tune, resolve=True)
    for label, overrides in sweep_commands(tune):
        if reason := invalid_reason(overrides):
            print(f"skip {label}: {reason}", flush=True)
            continue
        cmd = [sys.executable, str(ROOT / "train.py"), "-m", *overrides]
        print(f"run {label}: {' '.join(cmd[2:])}", flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
