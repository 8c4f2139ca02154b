"""Capacity under reduced precision: finished capacity runs scored again with their trained
weights rounded to each number format of ``rnncap.analysis.precision``.

For every finished capacity run (``metrics.json`` and ``weights.pt`` in its folder, written by
``train.py``) and every member of it (a population's K members; a solo run's one): the member
is rebuilt from the run's own config (``.hydra/config.yaml``) exactly as it was trained (its
data set is a function of its config), its weights loaded and rounded, and the capacity task
scores it again. Per format:

    bits(p)                     the bits the rounded model stores (the task's own metric)
    bits_per_param(p)         = bits(p) / params
    stored_bits(p)            = params * bits_per_weight(p) + scales(p) * 32
    bits_per_weight_bit(p)    = bits(p) / (params * bits_per_weight(p))    (scales left out)
    bits_per_stored_bit(p)    = bits(p) / stored_bits(p)                   (every stored bit)

The fp32 row is the run's own result: the re-score reproduces ``metrics.json`` (a check, not
a copy). A model size's capacity at a format is, as in ``rnncap fit``, the maximum over its
runs and members; bits/param per cell is the slope through the origin over sizes, the bits
per weight bit that slope over the format's bits per weight, and the bits per stored bit the
least-squares slope through the origin of the sizes' capacities against their stored bits. The runs'
training precision (``hardware.precision``: ``32-true``, ``bf16-mixed``) is kept apart: a grid
trained in bf16-mixed against one trained in fp32 is the Morris et al. (2025) comparison.

    rnncap precision --runs results/capacity/runs/capacity results/precision/runs/capacity
        --out results/precision/report
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from rnncap.analysis.capacity import capacity_fits, capacity_table
from rnncap.analysis.precision import (
    PRECISIONS,
    bits_per_stored_bit,
    bits_per_weight_bit,
    model_stored_bits,
    rounded_copy,
)
from rnncap.analysis.precision_figure import write_precision_figure
from rnncap.analysis.tables import ALL_DEPTHS, CONF_DIR, FIT_COLUMNS, Row, write_csv
from rnncap.base.io import write_json_atomic
from rnncap.core.build import build_model, build_task, final_metrics
from rnncap.core.population import check_population
from rnncap.core.run import METRICS_FILE, WEIGHTS_FILE
from rnncap.core.stack import count_parameters

CONFIG_FILE = ".hydra/config.yaml"  # the run's composed config, as Hydra saved it
SCORE_COLUMNS = [
    "run",
    "member",
    "trained",
    "precision",
    "weight_bits",
    "cell",
    "depth",
    "params",
    "hidden",
    "samples",
    "status",
    "accuracy",
    "bits",
    "bits_per_param",
    "stored_bits",
    "scale_bits",
    "bits_per_weight_bit",
    "bits_per_stored_bit",
    "recorded_bits",
]
# a fit of rnncap fit's table per training precision and format, with bits per weight bit
# (scales left out) and per stored bit (scales counted)
PRECISION_COLUMNS = [
    "trained",
    "precision",
    "weight_bits",
    *FIT_COLUMNS,
    "scale_bits_per_param",
    "bits_per_weight_bit",
    "bits_per_stored_bit",
]


class NotACapacityRun(ValueError):
    """A folder that holds no finished capacity run with saved weights; the message says why."""


def run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` that holds a ``metrics.json`` (a finished run)."""
    return sorted(path.parent for path in root.rglob(METRICS_FILE))


def check_run(run: Path) -> list[Row]:
    """The members' recorded metrics of a finished capacity run with a config and saved
    weights (a solo run: its metrics.json); NotACapacityRun naming what it lacks."""
    metrics = json.loads((run / METRICS_FILE).read_text())
    if metrics.get("task") != "capacity":
        raise NotACapacityRun(f"{run} is a task={metrics.get('task')} run, not a capacity run")
    if not (run / CONFIG_FILE).is_file():
        raise NotACapacityRun(f"{run} has no {CONFIG_FILE} to rebuild its model from")
    if not (run / WEIGHTS_FILE).is_file():
        raise NotACapacityRun(f"{run} has no {WEIGHTS_FILE} (trained before runs saved weights)")
    return metrics.get("members") or [metrics]


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """The solo config of every member (a solo run: itself)."""
    return check_population(cfg) if cfg.model.population > 1 else [cfg]


def rescore_run(run: Path, precisions: Sequence[str], label: str = "") -> list[Row]:
    """One row per member and format: the member's metrics with its weights at that format,
    and the bits its run recorded; a member whose training diverged has null metrics."""
    recorded = check_run(run)
    cfg = OmegaConf.load(run / CONFIG_FILE)
    weights = torch.load(run / WEIGHTS_FILE, map_location="cpu", weights_only=True)["members"]
    members = member_configs(cfg)
    if not len(members) == len(weights) == len(recorded):
        raise NotACapacityRun(f"{run}: {len(weights)} saved models for {len(members)} members")
    rows = []
    for index, (solo, state) in enumerate(zip(members, weights, strict=True)):
        diverged = recorded[index].get("status") == "diverged"
        pl.seed_everything(solo.seed, workers=True, verbose=False)  # as the run built it
        task = build_task(solo)
        model = build_model(solo, task)
        model.load_state_dict(state)
        params = count_parameters(model)
        for precision in precisions:
            metrics = final_metrics(rounded_copy(model, precision), diverged, task, params)
            bits = metrics.get("bits")
            stored = model_stored_bits(model, precision)
            rows.append(
                {
                    "run": label,
                    "member": index,
                    "trained": cfg.hardware.precision,
                    "precision": precision,
                    "weight_bits": PRECISIONS[precision],
                    "cell": cfg.cell.name,
                    "depth": cfg.depth,
                    "params": params,
                    "hidden": model.hidden_size,
                    "samples": solo.task.samples,
                    "task": "capacity",
                    **metrics,
                    "stored_bits": stored,
                    "scale_bits": stored - params * PRECISIONS[precision],
                    "bits_per_weight_bit": (
                        None if bits is None else bits_per_weight_bit(bits, params, precision)
                    ),
                    "bits_per_stored_bit": (
                        None if bits is None else bits_per_stored_bit(bits, stored)
                    ),
                    "recorded_bits": recorded[index].get("bits"),
                }
            )
    return rows


def precision_fits(scores: Iterable[Row], conf_dir: Path = CONF_DIR) -> list[Row]:
    """Per (training precision, format, cell, depth and all depths): bits/param as the slope
    over model sizes of the sizes' capacities (max over runs and members); bits per weight
    bit, that slope over the format's bits per weight; and bits per stored bit, the slope
    through the origin of the capacities against each size's stored bits (scales counted)."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in scores:
        groups[(row["trained"], row["precision"])].append(row)
    fits = []
    for (trained, precision), rows in groups.items():
        stored = {_size(r): r["stored_bits"] for r in rows}
        table = capacity_table(rows, conf_dir)
        for fit in capacity_fits(table, conf_dir=conf_dir):
            sizes = [
                t
                for t in table
                if t["cell"] == fit["cell"]
                and fit["depth"] in (ALL_DEPTHS, t["depth"])
                and math.isfinite(t["capacity"])
            ]
            fits.append(
                {
                    "trained": trained,
                    "precision": precision,
                    "weight_bits": PRECISIONS[precision],
                    **fit,
                    **scale_inclusive(sizes, stored, PRECISIONS[precision]),
                    "bits_per_weight_bit": fit["slope"] / PRECISIONS[precision],
                }
            )
    return fits


def _size(row: Row) -> tuple:
    return (row["cell"], row["depth"], row["params"], row["hidden"])


def scale_inclusive(sizes: Sequence[Row], stored: dict[tuple, float], weight_bits: float) -> Row:
    """``bits_per_stored_bit``: least squares ``capacity = k * stored_bits`` through the origin
    over ``sizes`` (rows of ``capacity_table``); ``scale_bits_per_param``: the scale bits per
    parameter, mean over the sizes (NaN both when no size finished)."""
    if not sizes:
        return {"scale_bits_per_param": math.nan, "bits_per_stored_bit": math.nan}
    x = np.array([stored[_size(t)] for t in sizes])
    y = np.array([t["capacity"] for t in sizes])
    params = np.array([t["params"] for t in sizes], float)
    return {
        "scale_bits_per_param": float(np.mean((x - params * weight_bits) / params)),
        "bits_per_stored_bit": float(x @ y / (x @ x)),
    }


def fp32_mismatches(scores: Iterable[Row]) -> int:
    """How many fp32 re-scores differ from the bits their run recorded (more than 1e-6 bits)."""
    wrong = 0
    for row in scores:
        if row["precision"] != "fp32":
            continue
        before, now = row["recorded_bits"], row.get("bits")
        if (before is None) != (now is None) or (now is not None and abs(now - before) > 1e-6):
            wrong += 1
    return wrong


def summary(fits: Sequence[Row]) -> dict[str, Any]:
    """``{cell: {trained: {format: {bits_per_param, bits_per_weight_bit, bits_per_stored_bit,
    scale_bits_per_param, depth<d>}}}}``: the slopes over all depths, and per depth
    (``depth<d>``: bits/param at depth d), where grids trained in other precisions cover other
    depths compare at a common one."""
    out: dict[str, Any] = {}
    for fit in fits:
        slope = fit["slope"] if math.isfinite(fit["slope"]) else None
        entry = out.setdefault(fit["cell"], {}).setdefault(fit["trained"], {})
        entry = entry.setdefault(fit["precision"], {})
        if fit["depth"] == ALL_DEPTHS:
            entry["bits_per_param"] = slope
            for key in ("bits_per_weight_bit", "bits_per_stored_bit", "scale_bits_per_param"):
                entry[key] = fit[key] if slope is not None and math.isfinite(fit[key]) else None
        else:
            entry[f"depth{fit['depth']}"] = slope
    return out


def most_per_stored_bit(fits: Sequence[Row]) -> dict[str, Any]:
    """Per training precision and cell, the format that stores the most per bit over all
    depths, with the scales counted (``scales_counted``) and left out (``weights_only``)."""
    out: dict[str, Any] = {}
    for fit in fits:
        if fit["depth"] != ALL_DEPTHS or not math.isfinite(fit["slope"]):
            continue
        cell = out.setdefault(fit["trained"], {}).setdefault(fit["cell"], {})
        for name, key in (("scales_counted", "bits_per_stored_bit"),
                          ("weights_only", "bits_per_weight_bit")):  # fmt: skip
            if name not in cell or fit[key] > cell[name][1]:
                cell[name] = (fit["precision"], fit[key])
    return {
        trained: {cell: {k: v[0] for k, v in best.items()} for cell, best in cells.items()}
        for trained, cells in out.items()
    }


def rescore(
    roots: Sequence[Path], out: Path, precisions: Sequence[str], conf_dir: Path = CONF_DIR
) -> dict[str, Any]:
    """Re-score every finished capacity run under ``roots``; write ``scores.csv`` (per member
    and format), ``precision.csv`` (fits), ``precision.png`` and, last, ``summary.json`` into
    ``out``. Raises
    NotACapacityRun before writing anything when a run is not one, or none is found."""
    runs = [(root, run) for root in roots for run in run_folders(root)]
    if not runs:
        raise NotACapacityRun(f"no finished runs under {', '.join(map(str, roots))}")
    for _, run in runs:  # every run checked before the first is scored
        check_run(run)
    scores = []
    for root, run in runs:
        scores += rescore_run(run, precisions, str(run.relative_to(root.parent)))
    fits = precision_fits(scores, conf_dir)
    result = {
        "runs": len(runs),
        "members": len({(r["run"], r["member"]) for r in scores}),
        "fp32_mismatches": fp32_mismatches(scores),
        "bits_per_param": summary(fits),
        "most_per_stored_bit": most_per_stored_bit(fits),
    }
    write_csv(scores, out / "scores.csv", SCORE_COLUMNS)
    write_csv(fits, out / "precision.csv", PRECISION_COLUMNS)
    write_precision_figure(fits, out / "precision.png", conf_dir)
    write_json_atomic(out / "summary.json", result)
    return result
