"""Bad input on the command line: one line ``error: ...`` on stderr and exit status 2.

Hydra reports its own errors (an unknown option or key, a value of the wrong type) by
printing them and exiting 1. ``one_line_errors`` asks Hydra to raise them instead, turns a
refused value into rnncap's one line (``rnncap.core.validate.compose_error``) and leaves
unknown options and keys to Hydra's message, which lists what exists.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hydra.errors import HydraException

from rnncap.base.errors import ConfigError
from rnncap.core.validate import compose_error

FULL_ERROR = "HYDRA_FULL_ERROR"  # set: Hydra raises its errors (with full tracebacks)


def split_overrides(value: str | Sequence[str] | None) -> list[str]:
    """train.py overrides as params.yaml writes them, one string ``"a=1 b=2"``, as a list."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


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
