"""Trainability report (Collins et al. 2017, section 4): read from an Optuna study storage.

* Tuner curves (the paper's Figure 4): for each study (one cell and depth), the objective of
  trial i, the running median of the feasible objectives of trials 0..i, and the best feasible
  objective so far (max when the study maximises, min when it minimises); one panel per depth.
  Feasible: not diverged; a pruned trial counts at the value it was stopped at.
* Percent infeasible (the paper's Table 1): for the random-settings studies, the share of
  trials whose training diverged, per cell and depth, with its 95% Wilson interval.
* A verdict: the most trainable cell per depth (lowest final median, lowest best) next to
  the paper's (GRU at depth 1, +RNN at depth 8).
* W&B runs (``study_runs``): one per study, its curves as history rows against ``trial``, for
  the dashboard's per-depth panels (``rnncap.analysis.dashboard``).

A trial is infeasible when its run diverged: the sweeper records user attribute
``status = diverged`` (``hydra_plugins.rnncap_optuna``). Crashed (FAIL) and unfinished trials
are not counted. ``rnncap trainability --help`` runs it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnncap.analysis.output import write_png_atomic
from rnncap.analysis.studies import open_study_storage
from rnncap.analysis.tables import (
    CONF_DIR,
    CURVE_FIELDS,
    INFEASIBLE_COLUMNS,
    cell_label,
    cell_sort_key,
    write_csv,
)


@dataclass
class StudyTrials:
    """The finished trials of one study, in trial order."""

    name: str
    cell: str
    depth: int
    sampler: str
    objective: str
    maximize: bool
    values: list[float]  # objective; non-finite for infeasible trials
    feasible: list[bool]  # not diverged (complete, or pruned at its last value): the curves
    pruned: list[bool] = field(default_factory=list)  # stopped early by the tuner's pruner
    task: str = ""

    def __post_init__(self) -> None:
        self.pruned = self.pruned or [False] * len(self.values)  # none given: none pruned

    @property
    def diverged(self) -> int:
        """Trials whose training diverged (pruned ones did not)."""
        return sum(not ok and not p for ok, p in zip(self.feasible, self.pruned, strict=True))


def load_studies(storage: str) -> list[StudyTrials]:
    """Every study in ``storage`` (a sqlite, journal or database URL, as
    ``hydra.sweeper.storage`` takes it) with its finished trials, COMPLETE and PRUNED (the sweeper's
    study attributes give cell, depth, sampler and objective). A pruned trial's value is the
    last one it reported: a setting that did not diverge, on the curves at the value the
    tuner stopped it at (a pessimistic one: it would only have improved)."""
    import optuna

    storage = open_study_storage(storage)
    studies = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        trials = study.get_trials(deepcopy=False, states=states)
        trials = sorted(trials, key=lambda t: t.number)
        attrs = study.user_attrs
        studies.append(
            StudyTrials(
                name=study.study_name,
                cell=str(attrs.get("cell", "?")),
                depth=int(attrs.get("depth", 0)),
                sampler=str(attrs.get("sampler", "?")),
                objective=str(attrs.get("objective", "value")),
                maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
                values=[math.nan if t.value is None else float(t.value) for t in trials],
                feasible=[t.user_attrs.get("status", "ok") != "diverged" for t in trials],
                pruned=[t.state == optuna.trial.TrialState.PRUNED for t in trials],
                task=str(attrs.get("task", "")),
            )
        )
    return studies


def tuner_curves(
    values: Sequence[float], feasible: Sequence[bool], maximize: bool
) -> tuple[list[float], list[float]]:
    """(running median, best so far) of the feasible values of trials 0..i; NaN until the
    first feasible trial."""
    seen: list[float] = []
    medians, bests = [], []
    pick = max if maximize else min
    for value, ok in zip(values, feasible, strict=True):
        if ok and math.isfinite(value):
            seen.append(value)
        medians.append(float(np.median(seen)) if seen else math.nan)
        bests.append(pick(seen) if seen else math.nan)
    return medians, bests


def curve_rows(studies: Sequence[StudyTrials]) -> list[dict]:
    rows = []
    for s in studies:
        medians, bests = tuner_curves(s.values, s.feasible, s.maximize)
        for i, (value, ok) in enumerate(zip(s.values, s.feasible, strict=True)):
            status = "pruned" if s.pruned[i] else "ok" if ok else "diverged"
            rows.append(
                {
                    "study": s.name,
                    "cell": s.cell,
                    "depth": s.depth,
                    "sampler": s.sampler,
                    "trial": i,
                    "status": status,
                    "value": value if status != "diverged" else "",
                    "median": medians[i],
                    "best": bests[i],
                }
            )
    return rows


def study_runs(studies: Sequence[StudyTrials]) -> list[dict]:
    """One W&B run per study: ``name``; ``config`` (``cell.name``, ``depth``, ``task.name``,
    the keys a training run logs, and ``sampler``, ``objective``, ``direction``, ``study``);
    ``history``, a row per finished trial in trial order with ``trial`` (0, 1, ...),
    ``best_so_far`` and ``running_median`` of the feasible objectives so far and ``objective``
    (each left out where it is not a finite number: before the first feasible trial, and a
    diverged trial's objective), ``diverged`` and ``pruned`` (0 or 1); and ``summary``: trials,
    diverged, pruned, ``diverged_share`` and the final ``best`` and ``median`` (None: none)."""
    runs = []
    for s in studies:
        medians, bests = tuner_curves(s.values, s.feasible, s.maximize)
        history = []
        for i, (value, ok) in enumerate(zip(s.values, s.feasible, strict=True)):
            row = {"trial": i, "diverged": int(not ok and not s.pruned[i])}
            row["pruned"] = int(s.pruned[i])
            numbers = {"objective": value if ok else math.nan}
            numbers |= {"best_so_far": bests[i], "running_median": medians[i]}
            history.append(row | {k: v for k, v in numbers.items() if math.isfinite(v)})
        finite = bool(bests) and math.isfinite(bests[-1])
        config = {"cell": {"name": s.cell}, "depth": s.depth, "task": {"name": s.task}}
        config |= {"sampler": s.sampler, "objective": s.objective, "study": s.name}
        config["direction"] = "maximize" if s.maximize else "minimize"
        n = len(s.values)
        summary = {"trials": n, "diverged": s.diverged, "pruned": sum(s.pruned)}
        summary["diverged_share"] = s.diverged / n if n else None
        summary |= {
            "best": bests[-1] if finite else None,
            "median": medians[-1] if finite else None,
        }
        runs.append({"name": s.name, "config": config, "history": history, "summary": summary})
    return runs


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion (scipy's), in [0, 1]. Unlike
    p -+ 1.96 sqrt(p(1-p)/n) it does not collapse to a point at 0 of n or n of n."""
    if trials == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def infeasible_table(studies: Sequence[StudyTrials], conf_dir: Path = CONF_DIR) -> list[dict]:
    """Rows (cell, depth, trials, diverged, pruned, percent diverged and its 95% Wilson
    interval), trials pooled over studies of the same cell and depth (a random-settings study
    per optimiser), sorted by cell (display order) then depth. Pruned trials count as finished
    settings that did not diverge, and are counted apart."""
    pooled: dict[tuple[str, int], list[int]] = {}
    for s in studies:
        counts = pooled.setdefault((s.cell, s.depth), [0, 0, 0])
        counts[0] += len(s.feasible)
        counts[1] += s.diverged
        counts[2] += sum(s.pruned)
    rows = []
    order = sorted(pooled.items(), key=lambda i: (cell_sort_key(i[0][0], conf_dir), i[0][1]))
    for (cell, depth), (n, bad, cut) in order:
        low, high = wilson_interval(bad, n)
        rows.append(
            {
                "cell": cell,
                "depth": depth,
                "trials": n,
                "diverged": bad,
                "pruned": cut,
                "percent": round(100.0 * bad / n, 1) if n else None,  # None: nothing finished
                "percent_low": round(100.0 * low, 1) if n else None,
                "percent_high": round(100.0 * high, 1) if n else None,
            }
        )
    return rows


def table_markdown(rows: Sequence[dict], depths: Sequence[int], conf_dir: Path = CONF_DIR) -> str:
    """Percent infeasible with its 95% interval and counts as a cell x depth markdown table
    ("-" where nothing ran), a row per cell in the order of ``rows``, named by its label."""
    if not rows:
        return "No random-settings studies in this storage.\n"
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    cell_of = {(r["cell"], r["depth"]): r for r in rows}
    lines = ["| cell | " + " | ".join(f"depth {d}" for d in depths) + " |"]
    lines.append("|---|" + "---|" * len(depths))
    for cell in cells:
        entries = []
        for d in depths:
            r = cell_of.get((cell, d))
            done = r is not None and r["trials"] > 0
            entries.append(
                f"{r['percent']} [{r['percent_low']}, {r['percent_high']}] "
                f"({r['diverged']}/{r['trials']})"
                if done
                else "-"
            )
        lines.append(f"| {cell_label(cell, conf_dir)} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(studies: Sequence[StudyTrials], path: Path, conf_dir: Path = CONF_DIR) -> None:
    """The paper's Figure 4: one panel per depth; per cell (one colour) the best so far (solid)
    and the running median (dashed) of the objective against tuner trial. A minimised loss
    is drawn on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({s.depth for s in studies})
    cells = sorted({s.cell for s in studies}, key=lambda c: cell_sort_key(c, conf_dir))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4.6 * len(depths), 3.6), squeeze=False, sharey=True
    )
    curves = {s.name: tuner_curves(s.values, s.feasible, s.maximize) for s in studies}
    maximize = bool(studies) and studies[0].maximize
    limits = None if maximize else curve_limits([bests for _, bests in curves.values()])
    for ax, depth in zip(axes[0], depths, strict=True):
        for s in sorted((s for s in studies if s.depth == depth), key=lambda s: s.cell):
            medians, bests = curves[s.name]
            color = colors[cells.index(s.cell) % len(colors)]
            trials = range(1, len(bests) + 1)
            ax.plot(trials, bests, color=color)
            ax.plot(trials, medians, color=color, linestyle="--", linewidth=1)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("tuner trial")
        if studies and not maximize:
            ax.set_yscale("log")
        if limits is not None:  # a median of two trials, one of them wild, leaves the axis
            ax.set_ylim(*limits)
        ax.grid(True, which="both", alpha=0.3)
    task = f" ({studies[0].task})" if studies and studies[0].task else ""
    axes[0][0].set_ylabel(f"evaluation {studies[0].objective if studies else 'objective'}{task}")
    handles = [plt.Line2D([], [], color=colors[i % len(colors)]) for i in range(len(cells))]
    handles += [plt.Line2D([], [], color="k"), plt.Line2D([], [], color="k", linestyle="--")]
    labels = [cell_label(c, conf_dir) for c in cells] + ["best so far", "median"]
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    write_png_atomic(fig, path, dpi=120)


def curve_limits(best_curves: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """A minimised loss's y range from the studies' best-so-far curves: from half the lowest
    best to ten times the highest first feasible value (a running median of one good and one
    wild trial would otherwise stretch the log axis over ten decades); None when empty."""
    firsts, lows = [], []
    for bests in best_curves:
        finite = [b for b in bests if math.isfinite(b) and b > 0]
        if finite:
            firsts.append(finite[0])
            lows.append(finite[-1])
    return (0.5 * min(lows), 10.0 * max(firsts)) if firsts else None


PAPER_MOST_TRAINABLE = {1: "gru", 8: "intersection"}  # Collins et al. 2017, section 4


def study_summaries(studies: Sequence[StudyTrials]) -> list[dict]:
    """Per tuner study: trials, feasible, diverged, pruned, and the final median and best of
    the feasible objectives (None when none is feasible)."""
    rows = []
    for s in studies:
        medians, bests = tuner_curves(s.values, s.feasible, s.maximize)
        finite = bool(bests) and math.isfinite(bests[-1])
        rows.append(
            {
                "study": s.name,
                "cell": s.cell,
                "depth": s.depth,
                "trials": len(s.values),
                "feasible": sum(s.feasible),
                "diverged": s.diverged,
                "pruned": sum(s.pruned),
                "median": medians[-1] if finite else None,
                "best": bests[-1] if finite else None,
                "maximize": s.maximize,
            }
        )
    return rows


def verdict(summaries: Sequence[dict], depths: Sequence[int]) -> dict:
    """Per depth, the most trainable cell of this run by the lowest (highest when maximising)
    final median and by the best objective of its tuner study, next to the paper's answer."""
    out = {}
    for depth in depths:
        rows = [r for r in summaries if r["depth"] == depth and r["median"] is not None]
        if not rows:
            continue
        sign = -1 if rows[0]["maximize"] else 1
        by_median = min(rows, key=lambda r: sign * r["median"])
        by_best = min(rows, key=lambda r: sign * r["best"])
        paper = PAPER_MOST_TRAINABLE.get(depth)
        out[str(depth)] = {
            "by_median": by_median["cell"],
            "by_best": by_best["cell"],
            "paper": paper,  # None: the paper names no cell at this depth
            "agrees_with_paper": {
                "median": by_median["cell"] == paper,
                "best": by_best["cell"] == paper,
            },
            "trials_per_cell": {r["cell"]: r["trials"] for r in rows},
        }
    return out


def report(
    storage: str,
    out: Path,
    curve_sampler: str | None = None,
    table_sampler: str = "RandomSampler",
    depths: Sequence[int] = (1, 8),
    conf_dir: Path = CONF_DIR,
    studies: Sequence[StudyTrials] | None = None,
) -> dict:
    """Write curves.{csv,png} and infeasible.{csv,md} plus summary.json into ``out``.
    ``curve_sampler`` limits the curves to studies of one sampler (None: every study not of
    ``table_sampler``). ``studies``: those of ``storage`` when already loaded."""
    out.mkdir(parents=True, exist_ok=True)
    studies = load_studies(storage) if studies is None else studies
    if curve_sampler is None:
        tuned = [s for s in studies if s.sampler != table_sampler]
    else:
        tuned = [s for s in studies if s.sampler == curve_sampler]
    random_runs = [s for s in studies if s.sampler == table_sampler and s.depth in depths]
    write_csv(curve_rows(tuned), out / "curves.csv", CURVE_FIELDS)
    if tuned:
        plot_curves(tuned, out / "curves.png", conf_dir)
    table = infeasible_table(random_runs, conf_dir)
    write_csv(table, out / "infeasible.csv", INFEASIBLE_COLUMNS)
    (out / "infeasible.md").write_text(table_markdown(table, depths, conf_dir))
    summaries = study_summaries(tuned)
    summary = {
        "best": {r["study"]: r["best"] for r in summaries},
        "median": {r["study"]: r["median"] for r in summaries},
        "percent_infeasible": {f"{r['cell']}-d{r['depth']}": r["percent"] for r in table},
        "percent_infeasible_95": {
            f"{r['cell']}-d{r['depth']}": [r["percent_low"], r["percent_high"]] for r in table
        },
        "settings": {f"{r['cell']}-d{r['depth']}": r["trials"] for r in table},
        "most_trainable": verdict(summaries, sorted({s.depth for s in tuned})),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
