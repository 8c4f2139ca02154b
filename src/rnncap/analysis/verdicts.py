"""Which cell is the most trainable, with its uncertainty (``rnncap trainability``).

* **Intervals.** The final running median and best-so-far of a cell's trials are bootstrapped:
  its trials (all of them, infeasible ones included) resampled with replacement ``RESAMPLES``
  times with a fixed seed, the median and best of each resample's feasible objectives taken,
  and the 2.5th and 97.5th percentiles kept (a 95% percentile interval). Studies of one cell
  and depth (several tuner studies, or several optimisers) are pooled.
* **Verdict** per depth and statistic (median, best): the leader is the cell with the lowest
  (highest when maximising) value, the runner-up the next. ``not separated`` when their
  intervals overlap; else ``agrees`` when the leader is the paper's most trainable cell
  (GRU at depth 1, +RNN at depth 8) and ``disagrees`` when it is not. ``margin`` is the
  runner-up's value minus the leader's (in the objective's units, positive = leader better)
  and ``gap`` the distance between their intervals (negative = overlap). ``not comparable``
  when the studies are not the paper's trainability setting: a task the paper did not tune
  for trainability (the capacity task measures memorisation), fewer than two cells at the
  depth, or a depth at which the paper names no cell.
* **Chance check.** A cell "leaves the constant-prediction loss" by a statistic (its median,
  its best) only when that statistic beats the best constant answer of its task: for a
  cross-entropy ``loss`` the entropy of the class frequencies (in nats per output; the lowest
  loss any prediction that ignores the input can reach, its argmax being the majority class),
  for ``accuracy`` the majority class's share. The frequencies are exact, not sampled: the law
  of each stream's capped depth stepped through the sequence, with the settings the trials
  stored (``metrics.<setting>``). Tasks without such a law (capacity, text8, ...) have no
  chance check (``None``). Each statistic's verdict lists the cells that left it
  (``left_chance``) and says when no cell, or only one, did (``note``): a lone cell that left
  it leads by construction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PAPER_MOST_TRAINABLE = {1: "gru", 8: "intersection"}  # Collins et al. 2017, section 4
PAPER_TASKS = ("parentheses", "arithmetic", "text8", "rcf")  # its trainability experiments
RESAMPLES = 1000
LEVEL = 0.95


def bootstrap_final(
    values: Sequence[float],
    feasible: Sequence[bool],
    maximize: bool,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """``{"median": [value, low, high], "best": [...]}``: the median and best of the feasible
    finite values, each with a 95% bootstrap percentile interval over resampled trials (a
    resample with no feasible trial is left out); None when no trial is feasible."""
    v = np.array([x if ok else math.nan for x, ok in zip(values, feasible, strict=True)], float)
    v[~np.isfinite(v)] = math.nan
    if not np.isfinite(v).any():
        return {"median": None, "best": None}
    rng = np.random.default_rng(seed)
    samples = v[rng.integers(0, len(v), (resamples, len(v)))]
    samples = samples[np.isfinite(samples).any(axis=1)]
    pick, nanpick = (max, np.nanmax) if maximize else (min, np.nanmin)
    finite = v[np.isfinite(v)]
    tails = [50 * (1 - LEVEL), 50 * (1 + LEVEL)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        medians, bests = np.nanmedian(samples, axis=1), nanpick(samples, axis=1)
    return {
        "median": [float(np.median(finite)), *map(float, np.percentile(medians, tails))],
        "best": [float(pick(finite)), *map(float, np.percentile(bests, tails))],
    }


# ---- the constant answer ------------------------------------------------------------------
def capped_walk_shares(steps: int, p_open: float, p_close: float, max_count: int) -> np.ndarray:
    """Share of ``steps`` steps at each capped depth 0..max_count of a walk from 0 that opens
    with ``p_open``, closes with ``p_close`` (a close at 0 stays at 0) and else stays."""
    law = np.zeros(steps + 2)
    law[0] = 1.0
    shares = np.zeros(max_count + 1)
    for _ in range(steps):
        new = law * (1 - p_open - p_close)
        new[1:] += law[:-1] * p_open
        new[:-1] += law[1:] * p_close
        new[0] += law[0] * p_close
        law = new
        np.add.at(shares, np.minimum(np.arange(len(law)), max_count), law)
    return shares / steps


def class_shares(task: str, settings: Mapping[str, Any]) -> np.ndarray | None:
    """The class frequencies of ``task``'s targets with ``settings`` (None: no law here).
    Parentheses: each of S streams sees its ( and ) with probability 1/V each, V = 2S + noise
    symbols; counting: the Dyck-1 walk of ``rnncap.analysis.counting`` at its training length."""
    try:
        if task == "parentheses":
            vocabulary = 2 * int(settings["streams"]) + int(settings["noise_symbols"])
            p = 1.0 / vocabulary
            return capped_walk_shares(int(settings["steps"]), p, p, int(settings["max_count"]))
        if task == "counting":
            from rnncap.analysis.counting import class_shares as dyck_shares

            return dyck_shares(int(settings["train_length"]), int(settings["max_count"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def constant_objective(task: str, objective: str, settings: Mapping[str, Any]) -> float | None:
    """The best objective an answer that ignores the input reaches (module doc); None when
    the task has no law here or the objective is neither ``loss`` nor ``accuracy``."""
    shares = class_shares(task, settings)
    if shares is None:
        return None
    if objective == "loss":
        kept = shares[shares > 0]
        return float(-(kept * np.log(kept)).sum())
    if objective == "accuracy":
        return float(shares.max())
    return None


# ---- the verdict ----------------------------------------------------------------------------
def _beats(value: float, chance: float, maximize: bool) -> bool:
    return value > chance if maximize else value < chance


def _leaders(cells: Mapping[str, dict], key: str, maximize: bool) -> dict[str, Any]:
    """Leader and runner-up of ``key`` (median or best) with margin, gap and separation."""
    ranked = [(c, r[key]) for c, r in cells.items() if r[key] is not None]
    ranked.sort(key=lambda item: -item[1][0] if maximize else item[1][0])
    out: dict[str, Any] = {"leader": ranked[0][0] if ranked else None}
    if len(ranked) < 2:
        return out | {"runner_up": None, "margin": None, "gap": None, "separated": False}
    (_, (lv, llo, lhi)), (runner, (rv, rlo, rhi)) = ranked[0], ranked[1]
    margin, gap = (lv - rv, llo - rhi) if maximize else (rv - lv, rlo - lhi)
    return out | {
        "runner_up": runner,
        "margin": margin,
        "gap": gap,
        "separated": gap > 0,
    }


def verdict(
    cells: Mapping[str, dict], depth: int, task: str, maximize: bool, chance: float | None
) -> dict[str, Any]:
    """The verdict at one depth from per-cell ``{"trials", "median", "best"}`` (intervals as
    ``bootstrap_final`` gives them); module doc for the rules."""
    paper = PAPER_MOST_TRAINABLE.get(depth)
    reason = None
    if task not in PAPER_TASKS:
        reason = f"task {task or '?'} is not one of the paper's trainability tasks"
    elif sum(r["median"] is not None for r in cells.values()) < 2:
        reason = "fewer than two cells with a feasible trial at this depth"
    elif paper is None:
        reason = f"the paper names no most trainable cell at depth {depth}"
    out: dict[str, Any] = {"paper": paper, "comparable": reason is None}
    if reason:
        out["reason"] = reason
    for key in ("median", "best"):
        lead = _leaders(cells, key, maximize)
        if reason is not None:
            word = "not comparable"
        elif not lead["separated"]:
            word = "not separated"
        else:
            word = "agrees" if lead["leader"] == paper else "disagrees"
        out[key] = {"verdict": word, **lead}
    out["chance"] = chance
    if chance is not None:
        for key in ("median", "best"):
            left = [c for c, r in cells.items() if r[key] and _beats(r[key][0], chance, maximize)]
            out[key]["left_chance"] = left
            if not left:
                out[key]["note"] = f"no cell's {key} beat the constant-prediction {chance:.4g}"
            elif len(left) == 1 and len(cells) > 1:
                out[key]["note"] = (
                    f"only {left[0]}'s {key} beat the constant-prediction {chance:.4g}: "
                    "it leads by construction"
                )
    out["cells"] = dict(cells)
    out["trials_per_cell"] = {c: r["trials"] for c, r in cells.items()}
    return out


def _interval(entry: list[float] | None) -> str:
    return "-" if entry is None else f"{entry[0]:.4g} [{entry[1]:.4g}, {entry[2]:.4g}]"


def verdict_lines(verdicts: Mapping[str, dict]) -> list[str]:
    """One line per depth and statistic: the verdict, leader and runner-up with intervals and
    the margin; the chance note beneath."""
    lines = []
    for depth, v in verdicts.items():
        for key in ("median", "best"):
            lead = v[key]
            line = f"depth {depth} {key}: {lead['verdict']}"
            if lead["leader"] is not None:
                line += f"; leader {lead['leader']} {_interval(v['cells'][lead['leader']][key])}"
            if lead["runner_up"] is not None:
                runner = v["cells"][lead["runner_up"]][key]
                line += f", runner-up {lead['runner_up']} {_interval(runner)}"
                line += f", margin {lead['margin']:.4g}"
            line += f" (paper: {v['paper'] or 'none'})"
            lines.append(line)
            if "note" in lead:
                lines.append(f"depth {depth} {key}: {lead['note']}")
        if "reason" in v:
            lines.append(f"depth {depth}: not comparable: {v['reason']}")
    return lines
