"""Atomic file output: a reader never sees a half-written result."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s directory, flush it to disk, then
    rename it onto ``path``: readers see the old file or the whole new one, never a part. The
    file gets the mode a plain ``open`` would give it (0644 under umask 022), not the 0600 of
    the temporary file, so that others on a shared machine can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON (non-finite floats as null) atomically."""
    clean = {k: _finite_or_none(v) for k, v in data.items()}

    def dump(f: IO) -> None:
        json.dump(clean, f, indent=2, sort_keys=True)
        f.write("\n")

    write_atomic(path, dump)
