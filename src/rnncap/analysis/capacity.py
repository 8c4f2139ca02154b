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
- per-unit memory: the best normalised reconstruction error per (cell, depth, width, settings)
  next to the theory ``max(0, (d - N) / d)`` for d i.i.d. input dimensions and N units.

    rnncap fit --runs results/train --out results/capacity --metrics results/capacity.json
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.analysis.studies import study_runs
from rnncap.analysis.tables import (
    ALL_DEPTHS,
    CAPACITY_COLUMNS,
    CONF_DIR,
    FIT_COLUMNS,
    MEMORY_COLUMNS,
    MEMORY_SETTINGS,
    Row,
    cell_sort_key,
    read_runs,
    write_csv,
)

MEASURED = ("ok", "pruned")  # a pruned trial stores what it had learned when it was stopped


def _done(run: Row, key: str) -> bool:
    return run.get("status") in MEASURED and run.get(key) is not None


def _group(runs: Iterable[Row], task: str, keys: Sequence[str]) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for run in runs:
        if run.get("task") == task:
            groups[tuple(run.get(k) for k in keys)].append(run)
    return groups


def capacity_table(runs: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[Row]:
    """One row per model size: capacity = max bits over its runs (NaN if none finished)."""
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
    (model sizes resampled with replacement), and the log-log exponent of capacity in params.
    With few sizes the interval is too narrow (about 83% coverage for 95% with 8 sizes)."""
    x, y = np.asarray(params, float), np.asarray(capacity, float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return dict.fromkeys(("slope", "slope_lo", "slope_hi", "exponent"), math.nan)
    slope = float(x @ y / (x @ x))
    idx = np.random.default_rng(seed).integers(0, len(x), (boot, len(x)))
    slopes = (x[idx] * y[idx]).sum(1) / (x[idx] ** 2).sum(1)
    lo, hi = np.percentile(slopes, [50 * (1 - level), 50 * (1 + level)])
    positive = y > 0
    exponent = math.nan
    if len(np.unique(x[positive])) >= 2:
        exponent = float(np.polyfit(np.log(x[positive]), np.log(y[positive]), 1)[0])
    return {"slope": slope, "slope_lo": float(lo), "slope_hi": float(hi), "exponent": exponent}


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
        fits.append(
            {
                "cell": cell,
                "depth": depth,
                "sizes": len(bpp),
                **fit,
                "mean_bits_per_param": float(np.mean(bpp)) if bpp else math.nan,
                "min_params": min(r["params"] for r in rows),
                "max_params": max(r["params"] for r in rows),
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


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def summary(fits: Sequence[Row], memory: Sequence[Row]) -> dict[str, Any]:
    """The DVC metrics: per cell its bits per parameter (fit slope, interval, exponent) and the
    slope at each depth; per cell its mean excess memory error over the theory line."""
    out: dict[str, Any] = {"capacity": {}, "memory": {}}
    for fit in fits:
        cell = out["capacity"].setdefault(fit["cell"], {})
        if fit["depth"] == ALL_DEPTHS:
            cell["bits_per_param"] = _finite(fit["slope"])
            cell |= {k: _finite(fit[k]) for k in ("slope_lo", "slope_hi", "exponent")}
        else:
            cell[f"depth{fit['depth']}"] = _finite(fit["slope"])
    for cell, gap in memory_gaps(memory).items():
        out["memory"][cell] = {"excess_mse": gap}
    return out


def analyse(
    runs_dir: Path,
    out: Path,
    metrics: Path,
    boot: int = 2000,
    studies: Sequence[str] = (),
    conf_dir: Path = CONF_DIR,
) -> dict[str, Any]:
    """Read the runs, write capacity.csv, fits.csv, memory.csv and the metrics JSON.
    ``studies``: Optuna storages (``sqlite:///...``) whose tuner trials join the runs, so a
    model size's capacity is the max over its runs and its tuned trials."""
    runs = read_runs(runs_dir) + study_runs(studies)
    table, memory = capacity_table(runs, conf_dir), memory_table(runs, conf_dir)
    fits = capacity_fits(table, boot, conf_dir=conf_dir)
    write_csv(table, out / "capacity.csv", CAPACITY_COLUMNS)
    write_csv(fits, out / "fits.csv", FIT_COLUMNS)
    write_csv(memory, out / "memory.csv", MEMORY_COLUMNS)
    result = summary(fits, memory)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return {"runs": len(runs), "table": table, "fits": fits, "memory": memory, "summary": result}
