"""Dataclass fields that carry their allowed values as metadata, for ``rnncap.core.validate``.

    depth: int = bounded(1, ge=1)                      # depth >= 1
    lr: float = bounded(0.01, gt=0)                    # lr > 0
    precision: str = choice("32-true", "32-true", "bf16-mixed")

Types are Hydra's to enforce at compose time; ranges and choices are checked by one walker.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

GE, GT, CHOICES = "ge", "gt", "choices"


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None) -> Any:
    """A numeric field with a lower bound: ``>= ge`` or ``> gt`` (null passes if Optional)."""
    bounds = {GE: ge} if ge is not None else {GT: gt}
    return field(default=default, metadata=bounds)


def choice(default: Any, *choices: Any) -> Any:
    """A field whose value must be one of ``choices`` (compared with its type: 1 is not true)."""
    return field(default=default, metadata={CHOICES: choices})
