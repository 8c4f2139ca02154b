"""Information measures used by the tasks."""

from __future__ import annotations

import math


def binary_entropy(p: float) -> float:
    """H2(p) = -p log2 p - (1-p) log2(1-p), with H2(0) = H2(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def stored_bits(samples: int, accuracy: float) -> float:
    """Bits stored about b random binary labels classified with accuracy p: b * (1 - H2(p)),
    the mutual information of a binary symmetric channel (Collins et al. 2017, section 3.1)."""
    return samples * (1.0 - binary_entropy(accuracy))
