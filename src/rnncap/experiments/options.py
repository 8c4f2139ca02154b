"""What the ``rnncap`` subcommands share: their options and the checks that turn bad input into
one line (``UsageError``; the command line prints ``error: ...`` and exits 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

WANDB_MODES = ["offline", "online", "disabled"]


class UsageError(ValueError):
    """A bad argument; the message is one line naming it."""


def one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def folder(path: Path, option: str) -> Path:
    if not path.is_dir():
        raise UsageError(f"{option} {path}: no such folder")
    return path


def file(path: Path, option: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return path


def storage(url: str, option: str) -> str:
    """An Optuna storage URL; a SQLite or journal file must exist (Optuna would create an
    empty one)."""
    if "://" not in url:
        raise UsageError(f"{option} {url}: not a storage URL (e.g. sqlite:///results/tune/x.db)")
    for prefix in ("sqlite:///", "journal:///"):
        found = Path(url.removeprefix(prefix))
        if url.startswith(prefix) and not found.is_file():
            raise UsageError(f"{option} {url}: no such file {found}")
    return url


def positive(option: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{option}={value} must be a positive integer")
    return value


def path(parser: argparse.ArgumentParser, flag: str, default: str, what: str, metavar="DIR"):
    """A path option; its default shows in --help as written (a str, turned into a Path)."""
    parser.add_argument(flag, type=Path, default=default, metavar=metavar, help=what)


def cell_configs(parser: argparse.ArgumentParser) -> None:
    """--cell-configs: the composed cell configs whose ``display`` says how a cell is shown."""
    path(
        parser,
        "--cell-configs",
        "results/configs/cell",
        "the composed cell configs (`rnncap generate cells DIR`): how figures show a cell",
    )


def tracking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="default", help="W&B group")
    parser.add_argument(
        "--wandb",
        default="offline",
        choices=WANDB_MODES,
        help="W&B mode; online without an API key logs offline",
    )
