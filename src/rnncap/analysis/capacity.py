"""Capacity analysis of finished runs (Collins et al. 2017, sections 3.1 and 3.2).

From every ``metrics.json`` under a results folder:

- capacity of a model size (cell, depth, params) = the maximum of ``bits`` over all its runs
  (sample counts b and seeds): b is a tuned hyperparameter, as in the paper; ``--studies``
  adds the trials of tuned Optuna studies (``rnncap.analysis.studies``) to the runs;
- bits per parameter = capacity / params;
- per cell, and per cell and depth, the least-squares line through the origin
  ``capacity = slope * params`` (the slope is the bits stored per parameter), with a bootstrap
  percentile confidence interval over model sizes, and the exponent k of ``capacity ~ params^k``
  (k = 1 is the paper's linear law);
- per cell and depth, the paper's headline (Figure 1i): the mean of bits per parameter over
  model sizes, with a bootstrap percentile interval over sizes (None for a single size);
- per capacity point, how converged it is (``rnncap.analysis.convergence``): its best bits
  against compute, the gain of the last doubling of compute, and ``saturated``, ``rising`` or
  ``unknown``; a size's row carries its points' verdict;
- per-unit memory: the best normalised reconstruction error per (cell, depth, width, settings)
  next to the theory ``max(0, (d - N) / d)`` for d i.i.d. input dimensions and N units.

    rnncap fit --runs results/capacity/runs --out results/capacity/report
        --metrics results/capacity/report/summary.json

writes ``capacity.csv`` (a row per size), ``fits.csv`` (per cell and depth, and pooled over
depths as depth ``all``), ``points.csv`` (a row per capacity point), ``convergence.csv`` (the
points' curves, long format), ``memory.csv``, and the metrics JSON (DVC metrics)::

    {"saturation_gain": 0.05,           # bits/param a doubling must add to count as rising
     "capacity": {"<cell>": {"depth<d>": {
         "mean_bits_per_param": m, "mean_lo": lo, "mean_hi": hi,  # Figure 1i, interval
         "slope": s, "slope_lo": lo, "slope_hi": hi,              # capacity = s * params
         "sizes": n, "rising": r, "unknown": u,                   # points still rising / unknown
         "points": {"p<params>-s<seed>": {"bits_per_param": b, "doubling_gain": g,
                                          "convergence": "saturated|rising|unknown"}}}}},
     "memory": {"<cell>": {"excess_mse": e}}}

Intervals are 95% bootstrap percentile intervals over model sizes; null where undefined (one
size) and every non-finite number is null. ``python -m rnncap.analysis.capacity FILE`` prints
the headline table of such a file (``headline_table``).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.analysis.convergence import (
    CURVE_COLUMNS,
    POINT_COLUMNS,
    RISING,
    SATURATION_GAIN,
    UNKNOWN,
    capacity_points,
    combine,
)
from rnncap.analysis.studies import study_runs
from rnncap.analysis.tables import (
    ALL_DEPTHS,
    CAPACITY_COLUMNS,
    CONF_DIR,
    FIT_COLUMNS,
    MEMORY_COLUMNS,
    MEMORY_SETTINGS,
    Row,
    cell_label,
    cell_sort_key,
    read_runs,
    write_csv,
)
from rnncap.base.io import write_atomic

MEASURED = ("ok", "pruned")  # a pruned trial stores what it had learned when it was stopped


def _done(run: Row, key: str) -> bool:
    return run.get("status") in MEASURED and run.get(key) is not None


def _group(runs: Iterable[Row], task: str, keys: Sequence[str]) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for run in runs:
        if run.get("task") == task:
            groups[tuple(run.get(k) for k in keys)].append(run)
    return groups


def capacity_table(
    runs: Iterable[Row], conf_dir: Path = CONF_DIR, points: Sequence[Row] | None = None
) -> list[Row]:
    """One row per model size: capacity = max bits over its runs (NaN if none finished), and
    the convergence of its capacity points (``convergence.combine``; ``points`` as
    ``capacity_points`` returns them, computed from ``runs`` when not given)."""
    runs = list(runs)
    if points is None:
        points = capacity_points(runs)[0]
    of_size: dict[tuple, list[Row]] = defaultdict(list)
    for point in points:
        of_size[tuple(point[k] for k in ("cell", "depth", "params", "hidden"))].append(point)
    rows = []
    for (cell, depth, params, hidden), group in _group(
        runs, "capacity", ("cell", "depth", "params", "hidden")
    ).items():
        best = max((r for r in group if _done(r, "bits")), key=lambda r: r["bits"], default={})
        capacity = best.get("bits", math.nan)
        rows.append(
            {
                "cell": cell,
                "depth": depth,
                "params": params,
                "hidden": hidden,
                "capacity": capacity,
                "bits_per_param": capacity / params,
                "best_samples": best.get("samples"),
                "best_accuracy": best.get("accuracy"),
                "runs": len(group),
                "diverged": sum(r.get("status") == "diverged" for r in group),
                **combine(of_size[(cell, depth, params, hidden)]),
            }
        )
    return sorted(rows, key=lambda r: (cell_sort_key(r["cell"], conf_dir), r["depth"], r["params"]))


def fit_through_origin(
    params: Sequence[float],
    capacity: Sequence[float],
    boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Row:
    """Least squares ``capacity = slope * params`` with a bootstrap percentile interval
    (model sizes resampled with replacement; NaN for fewer than 2 sizes), and the log-log
    exponent of capacity in params. With few sizes the interval is too narrow (about 83%
    coverage for 95% with 8 sizes)."""
    x, y = np.asarray(params, float), np.asarray(capacity, float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return dict.fromkeys(("slope", "slope_lo", "slope_hi", "exponent"), math.nan)
    slope = float(x @ y / (x @ x))
    lo, hi = _bootstrap(
        lambda i: (x[i] * y[i]).sum(1) / (x[i] ** 2).sum(1), len(x), boot, level, seed
    )
    positive = y > 0
    exponent = math.nan
    if len(np.unique(x[positive])) >= 2:
        exponent = float(np.polyfit(np.log(x[positive]), np.log(y[positive]), 1)[0])
    return {"slope": slope, "slope_lo": lo, "slope_hi": hi, "exponent": exponent}


def _bootstrap(statistic: Any, n: int, boot: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval of ``statistic(idx)`` over ``boot`` resamples of n sizes with
    replacement (``idx``: a boot x n index array); NaN, NaN for fewer than 2 sizes, where a
    resample can only repeat the one size and the interval would have zero width."""
    if n < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, n, (boot, n))
    lo, hi = np.percentile(statistic(idx), [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def mean_with_interval(
    values: Sequence[float], boot: int = 2000, level: float = 0.95, seed: int = 0
) -> Row:
    """The mean of the finite ``values`` (bits per parameter of each size: the paper's Figure 1i
    number) with a bootstrap percentile interval over sizes (NaN for fewer than 2)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if len(v) == 0:
        return dict.fromkeys(("mean_bits_per_param", "mean_lo", "mean_hi"), math.nan)
    lo, hi = _bootstrap(lambda i: v[i].mean(1), len(v), boot, level, seed)
    return {"mean_bits_per_param": float(v.mean()), "mean_lo": lo, "mean_hi": hi}


def capacity_fits(
    table: Sequence[Row], boot: int = 2000, level: float = 0.95, conf_dir: Path = CONF_DIR
) -> list[Row]:
    """Fits per cell and depth, then per cell over all depths (depth = ``ALL_DEPTHS``)."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in table:
        groups[(row["cell"], row["depth"])].append(row)
        groups[(row["cell"], ALL_DEPTHS)].append(row)
    fits = []
    for (cell, depth), rows in groups.items():
        bpp = [r["bits_per_param"] for r in rows if math.isfinite(r["bits_per_param"])]
        fit = fit_through_origin(
            [r["params"] for r in rows], [r["capacity"] for r in rows], boot, level
        )
        verdicts = [r.get("convergence", UNKNOWN) or UNKNOWN for r in rows]
        fits.append(
            {
                "cell": cell,
                "depth": depth,
                "sizes": len(bpp),
                **fit,
                **mean_with_interval(bpp, boot, level),
                "min_params": min(r["params"] for r in rows),
                "max_params": max(r["params"] for r in rows),
                "rising": verdicts.count(RISING),
                "unknown": verdicts.count(UNKNOWN),
            }
        )
    depth_key = lambda d: math.inf if d == ALL_DEPTHS else d  # noqa: E731
    return sorted(fits, key=lambda f: (cell_sort_key(f["cell"], conf_dir), depth_key(f["depth"])))


def theory_mse(hidden: int, input_dim: int) -> float:
    """Normalised error of the best N-unit memory of d i.i.d. unit-variance inputs: one real
    number per unit, so ``max(0, (d - N) / d)`` of the variance is lost."""
    return max(0.0, (input_dim - hidden) / input_dim)


def memory_table(runs: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[Row]:
    """One row per (cell, depth, settings, width): the best (lowest) error over its runs."""
    keys = ("cell", "depth", *MEMORY_SETTINGS, "hidden")
    rows = []
    for values, group in _group(runs, "memory", keys).items():
        row = dict(zip(keys, values, strict=True))
        done = [r for r in group if _done(r, "mse")]
        best = min(done, key=lambda r: r["mse"], default={})
        theory = group[0].get("theory_mse")
        if theory is None:
            theory = theory_mse(row["hidden"], row["input_dim"])
        row |= {
            "params": group[0].get("params"),
            "mse": best.get("mse", math.nan),
            "r2": max((r["r2"] for r in done if r.get("r2") is not None), default=math.nan),
            "mc": max((r["mc"] for r in done if r.get("mc") is not None), default=math.nan),
            "theory_mse": theory,
            "runs": len(group),
            "diverged": sum(r.get("status") == "diverged" for r in group),
        }
        rows.append(row)
    order = ("depth", *MEMORY_SETTINGS, "hidden")
    cell = lambda r: cell_sort_key(r["cell"], conf_dir)  # noqa: E731
    return sorted(rows, key=lambda r: (cell(r), *(r[k] or 0 for k in order)))


def memory_gaps(table: Sequence[Row]) -> dict[str, float]:
    """Per cell, the mean of (measured - theory) normalised error over its widths."""
    gaps: dict[str, list[float]] = defaultdict(list)
    for row in table:
        if math.isfinite(row["mse"]):
            gaps[row["cell"]].append(row["mse"] - row["theory_mse"])
    return {cell: float(np.mean(v)) for cell, v in gaps.items()}


def _number(value: Any, digits: int = 4) -> Any:
    """JSON has no NaN: a non-finite float is None; floats rounded to keep the file readable."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


HEADLINE_KEYS = ("mean_bits_per_param", "mean_lo", "mean_hi", "slope", "slope_lo", "slope_hi")


def summary(
    fits: Sequence[Row],
    memory: Sequence[Row],
    points: Sequence[Row] = (),
    saturation_gain: float = SATURATION_GAIN,
) -> dict[str, Any]:
    """The DVC metrics (the module docstring shows the shape): per cell and depth the mean of
    bits per parameter over sizes and the slope, each with its interval, how many sizes are
    still rising or of unknown convergence, and each point's convergence; per cell its mean
    excess memory error over the theory line."""
    out: dict[str, Any] = {"saturation_gain": saturation_gain, "capacity": {}, "memory": {}}
    for fit in fits:
        if fit["depth"] == ALL_DEPTHS:  # the headline is per depth, never pooled
            continue
        cell = out["capacity"].setdefault(fit["cell"], {})
        keys = (*HEADLINE_KEYS, "sizes", "rising", "unknown")
        cell[f"depth{fit['depth']}"] = {k: _number(fit.get(k)) for k in keys} | {"points": {}}
    for point in points:
        depth = out["capacity"].get(point["cell"], {}).get(f"depth{point['depth']}")
        if depth is not None:
            keys = ("bits_per_param", "doubling_gain", "convergence")
            depth["points"][point["point"]] = {k: _number(point[k]) for k in keys}
    for cell, gap in memory_gaps(memory).items():
        out["memory"][cell] = {"excess_mse": gap}
    return out


def _interval(entry: Row, lo: str, hi: str) -> str:
    if entry.get(lo) is None or entry.get(hi) is None:
        return "-"
    return f"[{entry[lo]:.2f}, {entry[hi]:.2f}]"


def headline_table(metrics: dict[str, Any], conf_dir: Path = CONF_DIR) -> str:
    """The paper's headline per cell and depth from a metrics JSON (``summary``'s shape): mean
    bits/param over sizes and the slope, each with its interval, the number of sizes and how
    many are still rising (or of unknown convergence)."""
    num = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    gain = metrics.get("saturation_gain", SATURATION_GAIN)
    lines = [
        "Bits per parameter per cell and depth: mean over sizes (the paper's Figure 1i) and slope",
        "of capacity through the origin, 95% bootstrap intervals over sizes (- for one size);",
        f"rising: sizes whose last doubling of compute added >= {gain:g} bits/param (a looser",
        "lower bound); unknown: sizes without a convergence record",
        f"  {'cell':<8}{'depth':>5}  {'mean':>5} {'interval':<13} {'slope':>5} {'interval':<13}"
        f"{'sizes':>5}{'rising':>7}{'unknown':>8}",
    ]
    cells = metrics.get("capacity", {})
    for cell in sorted(cells, key=lambda c: cell_sort_key(c, conf_dir)):
        depths = sorted(cells[cell], key=lambda d: int(d.removeprefix("depth")))
        for depth in depths:
            e = cells[cell][depth]
            lines.append(
                f"  {cell_label(cell, conf_dir):<8}{depth.removeprefix('depth'):>5}  "
                f"{num(e.get('mean_bits_per_param')):>5} {_interval(e, 'mean_lo', 'mean_hi'):<13} "
                f"{num(e.get('slope')):>5} {_interval(e, 'slope_lo', 'slope_hi'):<13}"
                f"{e.get('sizes', 0):>5}{e.get('rising', 0):>7}{e.get('unknown', 0):>8}"
            )
    if not cells:
        lines.append("  (no capacity runs)")
    return "\n".join(lines)


def analyse(
    runs_dir: Path,
    out: Path,
    metrics: Path,
    boot: int = 2000,
    studies: Sequence[str] = (),
    conf_dir: Path = CONF_DIR,
    saturation_gain: float = SATURATION_GAIN,
) -> dict[str, Any]:
    """Read the runs, write capacity.csv, fits.csv, points.csv, convergence.csv, memory.csv
    and the metrics JSON. ``studies``: Optuna storages (``sqlite:///...``) whose tuner trials
    join the runs, so a model size's capacity is the max over its runs and its tuned trials.
    ``saturation_gain``: bits per parameter the last doubling of compute must add for a point
    to count as still rising."""
    runs = read_runs(runs_dir) + study_runs(studies)
    points, curves = capacity_points(runs, saturation_gain)
    table, memory = capacity_table(runs, conf_dir, points), memory_table(runs, conf_dir)
    fits = capacity_fits(table, boot, conf_dir=conf_dir)
    write_csv(table, out / "capacity.csv", CAPACITY_COLUMNS)
    write_csv(fits, out / "fits.csv", FIT_COLUMNS)
    write_csv(points, out / "points.csv", POINT_COLUMNS)
    write_csv(curves, out / "convergence.csv", CURVE_COLUMNS)
    write_csv(memory, out / "memory.csv", MEMORY_COLUMNS)
    result = summary(fits, memory, points, saturation_gain)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    write_atomic(metrics, lambda f: f.write(text))
    return {
        "runs": len(runs),
        "table": table,
        "fits": fits,
        "points": points,
        "curves": curves,
        "memory": memory,
        "summary": result,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rnncap.analysis.capacity results/capacity/report/summary.json``: print
    its headline table."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "results/capacity/report/summary.json")
    print(headline_table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
