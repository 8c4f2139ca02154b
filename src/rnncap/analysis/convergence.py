"""How converged each capacity point is: its best bits against the compute spent.

A capacity point is one search: a (cell, depth, budget, seed) of the capacity grid, made of one
or more jobs (solo runs or populations) in one study folder. Every capacity job's
``metrics.json`` carries ``convergence``, a list of rows in compute order, one per evaluation::

    {"rung": int, "steps": int, "members": int,
     "compute": float,   # cumulative member-sample-steps of this job
     "wall_s": float,    # cumulative wall seconds of training of this job
     "best_bits": float} # best bits of any member evaluated so far (running max)

A point's curve concatenates its jobs' rows in job order (the run folders in natural order:
``.../<study>/2`` before ``.../<study>/10``), ``compute`` and ``wall_s`` offset by the
previous jobs' totals and ``best_bits`` a running max over the jobs; the bits of a diverged job
count nothing (as in the capacity table), its compute does.

The gain of the last doubling of compute = (best bits at the total compute - best bits at half
of it, i.e. at the last row with ``compute <= total / 2``) / params, in bits per parameter;
before the first evaluation nothing is stored (0 bits), so a curve of one evaluation cannot
show saturation. A point is

- ``saturated``: the last doubling added less than ``saturation_gain`` bits/param;
- ``rising``: it added at least that (its capacity is a looser lower bound);
- ``unknown``: some job has no convergence record (a run from before the record existed, or a
  tuner trial read from a study storage), or no job ever measured bits.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]
SATURATION_GAIN = 0.05  # bits/param the last doubling of compute must add to count as rising
SATURATED, RISING, UNKNOWN = "saturated", "rising", "unknown"
MEASURED = ("ok", "pruned")  # jobs whose bits count (as in the capacity table)
POINT_KEYS = ("cell", "depth", "params", "hidden", "seed")
POINT_COLUMNS = [
    "point",
    *POINT_KEYS,
    "budget",
    "jobs",
    "compute",
    "wall_s",
    "best_bits",
    "bits_per_param",
    "doubling_gain",
    "convergence",
]
CURVE_COLUMNS = ["point", "cell", "depth", "params", "seed", "compute", "wall_s", "best_bits",
                 "bits_per_param"]  # fmt: skip


def _natural(text: str) -> tuple:
    """``a/2`` before ``a/10``: digit runs compare as numbers."""
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in re.split(r"(\d+)", text))


def _study(run: Row) -> str:
    """The folder (or study storage name) holding a job: the point's jobs share it."""
    where = str(run.get("run", ""))
    return where.split("#")[0] if "#" in where else str(Path(where).parent)


def _bits(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def point_curve(jobs: Sequence[Row]) -> list[Row] | None:
    """The jobs' convergence rows concatenated in the given order (see the module docstring):
    ``compute``, ``wall_s`` and ``best_bits`` (None until bits were measured) per row; None if
    a job has no record."""
    curve: list[Row] = []
    compute = wall = 0.0
    best: float | None = None
    for job in jobs:
        rows = job.get("convergence")
        if not isinstance(rows, list):
            return None
        counts = job.get("status") in MEASURED
        for row in rows:
            bits = _bits(row.get("best_bits")) if counts else None
            if bits is not None:
                best = bits if best is None else max(best, bits)
            at = {"compute": compute + row["compute"], "wall_s": wall + row["wall_s"]}
            curve.append({**at, "best_bits": best})
        if rows:
            compute, wall = curve[-1]["compute"], curve[-1]["wall_s"]
    return curve


def doubling_gain(curve: Sequence[Row], params: int) -> float | None:
    """Bits per parameter added by the last doubling of compute; None without measured bits."""
    if not curve or curve[-1]["best_bits"] is None:
        return None
    half = curve[-1]["compute"] / 2
    before = [r["best_bits"] for r in curve if r["compute"] <= half]
    start = before[-1] if before and before[-1] is not None else 0.0
    return (curve[-1]["best_bits"] - start) / params


def verdict(gain: float | None, saturation_gain: float = SATURATION_GAIN) -> str:
    if gain is None:
        return UNKNOWN
    return RISING if gain >= saturation_gain else SATURATED


def point_label(row: Row) -> str:
    """A point's short name: ``p<params>-s<seed>``."""
    return f"p{row['params']}-s{row['seed']}"


def capacity_points(
    runs: Iterable[Row], saturation_gain: float = SATURATION_GAIN
) -> tuple[list[Row], list[Row]]:
    """Every capacity point of ``runs`` (``POINT_COLUMNS``) and the long table of their curves
    (``CURVE_COLUMNS``). A point's jobs: the runs of one study folder with one ``POINT_KEYS``
    (and ``budget``, where recorded). A point is named by ``point_label``, unique within its
    cell and depth. Its ``bits_per_param`` is its capacity as the capacity table counts it (the
    most bits of any job's final weights); ``best_bits`` is the curve's end, the most any
    evaluation measured, higher when a member scored at a rung end trained on and lost bits."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for run in runs:
        if run.get("task") == "capacity":
            key = (*(run.get(k) for k in POINT_KEYS), run.get("budget"), _study(run))
            groups[key].append(run)
    points, curves, labels = [], [], defaultdict(int)
    for key, jobs in groups.items():
        jobs = sorted(jobs, key=lambda r: _natural(str(r.get("run", ""))))
        point = dict(zip((*POINT_KEYS, "budget"), key[:-1], strict=True))
        name = point_label(point)  # a second point of one cell, depth, size, seed: "<name>#2"
        labels[(point["cell"], point["depth"], name)] += 1
        count = labels[(point["cell"], point["depth"], name)]
        curve = point_curve(jobs)
        gain = None if curve is None else doubling_gain(curve, point["params"])
        last = curve[-1] if curve else {}
        final = [_bits(r.get("bits")) for r in jobs if r.get("status") in MEASURED]
        capacity = max((b for b in final if b is not None), default=None)
        point |= {
            "point": name if count == 1 else f"{name}#{count}",
            "jobs": len(jobs),
            "compute": last.get("compute"),
            "wall_s": last.get("wall_s"),
            "best_bits": last.get("best_bits"),
            "bits_per_param": None if capacity is None else capacity / point["params"],
            "doubling_gain": gain,
            "convergence": verdict(gain, saturation_gain),
        }
        points.append(point)
        for row in curve or []:
            per_param = None if row["best_bits"] is None else row["best_bits"] / point["params"]
            curves.append({**point, **row, "bits_per_param": per_param})
    return points, curves


def combine(points: Sequence[Row]) -> Row:
    """The convergence of a model size from its points (seeds): compute and wall time summed
    (None if one is unknown), the largest doubling gain, and ``rising`` if any point is rising,
    else ``unknown`` if any is unknown, else ``saturated`` (the capacity, a max over the points,
    may still rise if any of them does)."""
    verdicts = {p["convergence"] for p in points}
    status = next((v for v in (RISING, UNKNOWN, SATURATED) if v in verdicts), UNKNOWN)
    gains = [p["doubling_gain"] for p in points if p["doubling_gain"] is not None]
    total = lambda k: None if any(p[k] is None for p in points) else sum(p[k] for p in points)  # noqa: E731
    return {
        "points": len(points),
        "compute": total("compute") if points else None,
        "wall_s": total("wall_s") if points else None,
        "doubling_gain": max(gains, default=None),
        "convergence": status,
    }
