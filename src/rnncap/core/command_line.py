"""Bad input on the command line: one line ``error: ...`` on stderr and exit status 2.

Hydra reports its own errors (an unknown option or key, a value of the wrong type) by
printing them and exiting 1. ``one_line_errors`` asks Hydra to raise them instead, turns a
refused value into rnncap's one line (``rnncap.core.validate.compose_error``) and leaves
unknown options and keys to Hydra's message, which lists what exists.

A run refused before any work (``refuse``) leaves no folder behind: Hydra made it, with its
``.hydra/`` and an empty log, before rnncap could look at the config. In a plain ``-m`` grid
(Hydra's basic sweeper) a refused point is skipped with a one-line note and the grid goes on;
``SkippedPoints``, a Hydra callback named in ``conf/train.yaml``, says at the end what was
skipped (and exits 2 when every point was).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError
from rnncap.core.validate import compose_error

FULL_ERROR = "HYDRA_FULL_ERROR"  # set: Hydra raises its errors (with full tracebacks)
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SKIPPED_FILE = "skipped.txt"  # in a -m grid's sweep dir: one line per refused point


def split_overrides(value: str | Sequence[str] | None) -> list[str]:
    """train.py overrides as params.yaml writes them, one string ``"a=1 b=2"``, as a list."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def remove_refused_run_dir(run_dir: Path, log_name: str, stop: Path) -> None:
    """Remove ``run_dir`` when it holds only what Hydra wrote before the run was refused
    (``.hydra/`` and an empty ``log_name``), then the folders above it that this leaves
    empty, up to ``stop`` (Hydra's ``outputs/<date>``); a folder with anything else stays."""
    log = run_dir / log_name
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {".hydra", log_name}:
        return
    if log.exists() and log.stat().st_size > 0:
        return
    shutil.rmtree(run_dir)
    parent = run_dir.parent
    while stop in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def refuse(message: str) -> None:
    """A run refused before any work: its folder goes; in a plain ``-m`` grid the point is
    skipped with a note (the grid goes on), else one line and exit 2."""
    if not HydraConfig.initialized():
        fail(message)
    hydra = HydraConfig.get()
    cwd = Path(hydra.runtime.cwd).resolve()
    remove_refused_run_dir(Path(hydra.runtime.output_dir).resolve(), f"{hydra.job.name}.log", cwd)
    if hydra.mode != RunMode.MULTIRUN or hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        fail(message)  # a single run; the tuner checks its points before it starts a trial
    point = " ".join(hydra.overrides.task)
    print(f"skip job {hydra.job.num} ({point}): {message}", file=sys.stderr)
    sweep_dir = Path(hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / SKIPPED_FILE).open("a") as f:  # one short line per job: appends whole
        f.write(f"{point}: {message}\n")


class SkippedPoints(Callback):
    """At the end of a ``-m`` grid, list the points that were refused and skipped; exit 2
    when every point was (nothing ran). Jobs are counted where they run in this process."""

    def __init__(self) -> None:
        self.jobs = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / SKIPPED_FILE).unlink(missing_ok=True)  # a rerun's

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.jobs += 1

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / SKIPPED_FILE
        skipped = path.read_text().splitlines() if path.exists() else []
        if not skipped:
            return
        of = f" of {self.jobs}" if self.jobs else ""
        lines = [f"skipped {len(skipped)}{of} points, refused (listed in {path}):"]
        print("\n".join([*lines, *(f"  {line}" for line in skipped)]), file=sys.stderr)
        if self.jobs and len(skipped) == self.jobs:
            fail("every point of the grid was refused: nothing ran")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a Hydra app so that bad values end in one line and exit 2."""
    asked = FULL_ERROR not in os.environ
    os.environ.setdefault(FULL_ERROR, "1")
    try:
        yield
    except ConfigError as err:
        fail(str(err))
    except HydraException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):  # raised inside a plugin Hydra instantiated
            fail(str(cause))
        line = compose_error(err)
        if line is not None:
            fail(line)
        cause = f"\n{err.__cause__}" if err.__cause__ is not None else ""
        print(f"{err}{cause}", file=sys.stderr)
        sys.exit(1)
    finally:
        if asked:
            os.environ.pop(FULL_ERROR, None)
