"""The convergence record of a capacity run: the best bits found against the compute spent.

``metrics.json`` key ``convergence``: one row per evaluation, in compute order (a solo run:
each validation check and the end; a population: each evaluation, or each rung end under
successive halving)::

    {"rung": int, "steps": int, "members": int, "compute": float, "wall_s": float,
     "best_bits": float}

``steps``: the training steps of the members still training at that point; ``members``: how
many members trained since the previous row (1 for a solo run); ``compute``: the cumulative
member-sample-steps (each step adds, per member trained, its samples per step: its minibatch,
or its b for full batch); ``wall_s``: cumulative wall seconds of training (a resumed run adds
to the time saved with its checkpoint); ``best_bits``: the running maximum of any member's
bits so far. The record travels in the run's checkpoints, so a resumed run loses no row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

CHECKPOINT_KEY = "convergence"


class ConvergenceRecord:
    """Compute and wall time spent, and a row at each evaluation."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.compute = 0.0
        self.wall_before = 0.0  # seconds of training before this process (from a checkpoint)
        self.started: float | None = None
        self.trained: set[int] = set()  # members trained since the last row

    def start(self) -> None:
        """Training (re)starts now: wall time counts from here on."""
        self.started = time.perf_counter()

    def wall_s(self) -> float:
        running = 0.0 if self.started is None else time.perf_counter() - self.started
        return self.wall_before + running

    def step(self, samples: Iterable[tuple[int, int]]) -> None:
        """One optimiser step of the members ``(index, samples per step)`` that trained."""
        for member, count in samples:
            self.compute += count
            self.trained.add(member)

    def best(self) -> float:
        return self.rows[-1]["best_bits"] if self.rows else -math.inf

    def add(self, rung: int, steps: int, bits: Iterable[float | None]) -> dict[str, Any]:
        """A row at an evaluation: ``bits`` of the members evaluated (None: diverged)."""
        finite = [b for b in bits if b is not None and math.isfinite(b)]
        best = max([self.best(), *finite])
        row = {
            "rung": rung,
            "steps": steps,
            "members": max(len(self.trained), 1),
            "compute": float(self.compute),
            "wall_s": round(self.wall_s(), 3),
            "best_bits": None if not math.isfinite(best) else float(best),
        }
        self.rows.append(row)
        self.trained = set()
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": [dict(r) for r in self.rows],
            "compute": self.compute,
            "wall_s": self.wall_s(),
            "trained": sorted(self.trained),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.compute = float(state["compute"])
        self.wall_before, self.started = float(state["wall_s"]), None
        self.trained = set(state["trained"])
