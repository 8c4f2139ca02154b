"""Size a stack to a parameter budget: the largest N whose total parameter count fits."""

from __future__ import annotations

from rnncap.core.stack import CellFactory, RecurrentStack


def hidden_for_budget(
    cell: CellFactory, depth: int, input_size: int, output_size: int, budget: int
) -> int:
    """Largest N with ``RecurrentStack.param_count(...) <= budget`` (the count is increasing
    in N). Raises ValueError when not even one unit fits."""

    def count(n: int) -> int:
        return RecurrentStack.param_count(cell, depth, input_size, n, output_size)

    if count(1) > budget:
        raise ValueError(
            f"model.budget={budget} is too small: one unit per layer at depth {depth} "
            f"needs {count(1)} parameters"
        )
    lo, hi = 1, 2
    while count(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: count(lo) <= budget < count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo
