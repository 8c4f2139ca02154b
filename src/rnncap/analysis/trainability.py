"""Trainability report (Collins et al. 2017, section 4): read from an Optuna study storage.

* Tuner curves (the paper's Figure 4): for each study (one cell and depth), the objective of
  trial i, the running median of the feasible objectives of trials 0..i, and the best feasible
  objective so far (max when the study maximises, min when it minimises); one panel per depth.
  Feasible: not diverged; a pruned trial counts at the value it was stopped at.
* Percent infeasible (the paper's Table 1): for the random-settings studies, the share of
  trials whose training diverged, per cell and depth, with its 95% Wilson interval, by both
  criteria (``DIVERGED``): ``nonfinite`` (a non-finite loss or parameter) and
  ``loss_above_start`` (that, or a final training loss above the first: the paper's
  "training loss diverged"; it reads ``metrics.first_loss`` and ``metrics.final_loss`` of a
  trial, and a trial that did not record them is left out of that column's count).
* A verdict per depth (``rnncap.analysis.verdicts``): the final median and best of each
  cell's trials with 95% bootstrap intervals; ``agrees``, ``disagrees`` or ``not separated``
  against the paper's most trainable cell (GRU at depth 1, +RNN at depth 8) with the margin,
  ``not comparable`` outside the paper's trainability setting; and a chance check (which
  cells beat the task's constant-prediction loss).
* W&B runs (``study_runs``): one per study, its curves as history rows against ``trial``, for
  the dashboard's per-depth panels (``rnncap.analysis.dashboard``).

A trial is infeasible when its run diverged by the chosen criterion (``--diverged``): the
sweeper records user attribute ``status = diverged`` for a non-finite run and every metric
of its ``metrics.json`` as ``metrics.<key>`` (``hydra_plugins.rnncap_optuna``). Crashed (FAIL)
and unfinished trials are not counted. ``rnncap trainability --help`` runs it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnncap.analysis import tables
from rnncap.analysis.studies import open_study_storage
from rnncap.analysis.tables import CONF_DIR, CURVE_FIELDS, cell_label, cell_sort_key, write_csv
from rnncap.analysis.trainability_figure import plot_curves
from rnncap.analysis.verdicts import bootstrap_final, constant_objective, verdict

DIVERGED = ("nonfinite", "loss_above_start")  # the criteria of --diverged
TUNE_STORAGE = "journal:///results/trainability/runs/studies.log"  # grids.trainability
INFEASIBLE_COLUMNS = [
    *tables.INFEASIBLE_COLUMNS,
    "recorded",
    "above_start",
    "above_percent",
    "above_low",
    "above_high",
]


def default_storage() -> str | None:
    """The storage ``rnncap trainability`` reads without ``--storage``: the tune stage's
    journal when it exists, else the sweeper's default (``hydra.sweeper.storage``, where a
    plain ``python train.py -m`` sweep writes) when that exists; None when neither does."""
    from hydra_plugins.rnncap_optuna.config import RnncapOptunaSweeperConf

    for url in (TUNE_STORAGE, RnncapOptunaSweeperConf.storage):
        if url and Path(url.split(":///", 1)[-1]).is_file():
            return url
    return None


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
    # final training loss above the first (None: the trial recorded neither)
    above_start: list[bool | None] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the task's settings, from a trial's metrics

    def __post_init__(self) -> None:
        self.pruned = self.pruned or [False] * len(self.values)  # none given: none pruned
        self.above_start = self.above_start or [None] * len(self.values)

    @property
    def diverged(self) -> int:
        """Trials whose training diverged (pruned ones did not)."""
        return sum(not ok and not p for ok, p in zip(self.feasible, self.pruned, strict=True))

    def infeasible(self, criterion: str = "nonfinite") -> list[bool | None]:
        """Per trial: diverged by ``criterion`` (``DIVERGED``); None where ``loss_above_start``
        cannot tell: the trial recorded no first loss, or (a non-finite run) its study's runs
        record none (such a run counts as above its start only beside runs that record it)."""
        nonfinite = [not ok and not p for ok, p in zip(self.feasible, self.pruned, strict=True)]
        if criterion == "nonfinite":
            return list(nonfinite)
        if all(a is None for a in self.above_start):  # runs that record no first loss
            return [None] * len(nonfinite)
        return [
            True if bad else above for bad, above in zip(nonfinite, self.above_start, strict=True)
        ]

    def feasible_by(self, criterion: str = "nonfinite") -> list[bool]:
        """On the curves under ``criterion``: feasible, and not above its start when that
        criterion is chosen and the trial recorded it."""
        return [
            ok and not bad
            for ok, bad in zip(self.feasible, self.infeasible(criterion), strict=True)
        ]


def above_start(attrs: dict) -> bool | None:
    """A trial's final training loss above its first (``metrics.first_loss``,
    ``metrics.final_loss``); None when it recorded no finite pair."""
    first, final = attrs.get("metrics.first_loss"), attrs.get("metrics.final_loss")
    if not isinstance(first, (int, float)) or not math.isfinite(first):
        return None
    if final is None or not isinstance(final, (int, float)) or not math.isfinite(final):
        return True  # a final loss that is not finite is above any start
    return final > first


SETTINGS_SKIP = ("status", "run", "cell", "depth", "hidden", "params", "seed", "task")


def task_settings(trials: Sequence) -> dict:
    """The task's settings as the first trial with metrics recorded them (``metrics.<key>``)."""
    for trial in trials:
        keys = {
            k[len("metrics.") :]: v for k, v in trial.user_attrs.items() if k.startswith("metrics.")
        }
        if keys:
            return {k: v for k, v in keys.items() if k not in SETTINGS_SKIP}
    return {}


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
                above_start=[above_start(t.user_attrs) for t in trials],
                settings=task_settings(trials),
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


def curve_rows(studies: Sequence[StudyTrials], criterion: str = "nonfinite") -> list[dict]:
    """A row per trial: its objective (empty when infeasible), running median and best."""
    rows = []
    for s in studies:
        feasible = s.feasible_by(criterion)
        medians, bests = tuner_curves(s.values, feasible, s.maximize)
        for i, (value, ok) in enumerate(zip(s.values, feasible, strict=True)):
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
    interval; then by ``loss_above_start``: trials that recorded their first and final loss,
    how many of them diverged so, percent and interval), trials pooled over studies of the
    same cell and depth (a random-settings study per optimiser), sorted by cell (display order)
    then depth. Pruned trials count as finished settings that did not diverge, and are counted
    apart."""
    pooled: dict[tuple[str, int], list[int]] = {}
    for s in studies:
        counts = pooled.setdefault((s.cell, s.depth), [0, 0, 0, 0, 0])
        above = s.infeasible("loss_above_start")
        counts[0] += len(s.feasible)
        counts[1] += s.diverged
        counts[2] += sum(s.pruned)
        counts[3] += sum(a is not None for a in above)
        counts[4] += sum(a is True for a in above)
    rows = []
    order = sorted(pooled.items(), key=lambda i: (cell_sort_key(i[0][0], conf_dir), i[0][1]))
    for (cell, depth), (n, bad, cut, recorded, above) in order:
        rows.append(
            {"cell": cell, "depth": depth, "trials": n, "diverged": bad, "pruned": cut}
            | percent_row(bad, n, ("percent", "percent_low", "percent_high"))
            | {"recorded": recorded, "above_start": above}
            | percent_row(above, recorded, ("above_percent", "above_low", "above_high"))
        )
    return rows


def percent_row(count: int, trials: int, keys: tuple[str, str, str]) -> dict:
    """Percent and 95% Wilson interval under ``keys`` (None when nothing finished)."""
    if not trials:
        return dict.fromkeys(keys)
    low, high = wilson_interval(count, trials)
    values = (100.0 * count / trials, 100.0 * low, 100.0 * high)
    return {k: round(v, 1) for k, v in zip(keys, values, strict=True)}


def _entry(r: dict | None, prefix: str, count: str, trials: str) -> str:
    if r is None or not r[trials]:
        return "-"
    low, high = (
        ("percent_low", "percent_high") if prefix == "percent" else ("above_low", "above_high")
    )
    return f"{r[prefix]} [{r[low]}, {r[high]}] ({r[count]}/{r[trials]})"


def table_markdown(rows: Sequence[dict], depths: Sequence[int], conf_dir: Path = CONF_DIR) -> str:
    """Percent infeasible with its 95% interval and counts as a cell x depth markdown table,
    two columns per depth (non-finite; final loss above the first, "-" where no trial
    recorded it), "-" where nothing ran, a row per cell in the order of ``rows``."""
    if not rows:
        return "No random-settings studies in this storage.\n"
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    cell_of = {(r["cell"], r["depth"]): r for r in rows}
    head = [f"depth {d} {what}" for d in depths for what in ("non-finite", "loss above start")]
    lines = ["| cell | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for cell in cells:
        entries = []
        for d in depths:
            r = cell_of.get((cell, d))
            entries.append(_entry(r, "percent", "diverged", "trials"))
            entries.append(_entry(r, "above_percent", "above_start", "recorded"))
        lines.append(f"| {cell_label(cell, conf_dir)} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def study_summaries(studies: Sequence[StudyTrials], criterion: str = "nonfinite") -> list[dict]:
    """Per tuner study: trials, feasible, diverged, pruned, and the final median and best of
    the feasible objectives (None when none is feasible) with 95% bootstrap intervals."""
    rows = []
    for s in studies:
        feasible = s.feasible_by(criterion)
        medians, bests = tuner_curves(s.values, feasible, s.maximize)
        finite = bool(bests) and math.isfinite(bests[-1])
        rows.append(
            {
                "study": s.name,
                "cell": s.cell,
                "depth": s.depth,
                "trials": len(s.values),
                "feasible": sum(feasible),
                "diverged": sum(bool(b) for b in s.infeasible(criterion)),
                "pruned": sum(s.pruned),
                "median": medians[-1] if finite else None,
                "best": bests[-1] if finite else None,
                "maximize": s.maximize,
                "interval": bootstrap_final(s.values, feasible, s.maximize),
            }
        )
    return rows


def verdicts(studies: Sequence[StudyTrials], criterion: str = "nonfinite") -> dict[str, dict]:
    """Per depth (a key ``"<depth>"``): the verdict of ``rnncap.analysis.verdicts`` from every
    cell's trials, pooled over its studies at that depth (``trials`` counts them all)."""
    out = {}
    for depth in sorted({s.depth for s in studies}):
        at_depth = [s for s in studies if s.depth == depth]
        cells: dict[str, dict] = {}
        for cell in sorted({s.cell for s in at_depth}):
            own = [s for s in at_depth if s.cell == cell]
            values = [v for s in own for v in s.values]
            feasible = [ok for s in own for ok in s.feasible_by(criterion)]
            cells[cell] = {"trials": len(values), "studies": len(own)}
            cells[cell] |= bootstrap_final(values, feasible, own[0].maximize)
        first = at_depth[0]
        chance = constant_objective(first.task, first.objective, first.settings)
        out[str(depth)] = verdict(cells, depth, first.task, first.maximize, chance)
    return out


def report(
    storage: str,
    out: Path,
    curve_sampler: str | None = None,
    table_sampler: str = "RandomSampler",
    depths: Sequence[int] = (1, 8),
    conf_dir: Path = CONF_DIR,
    studies: Sequence[StudyTrials] | None = None,
    diverged: str = "nonfinite",
) -> dict:
    """Write curves.{csv,png} and infeasible.{csv,md} plus summary.json into ``out``.
    ``curve_sampler`` limits the curves to studies of one sampler (None: every study not of
    ``table_sampler``). ``studies``: those of ``storage`` when already loaded. ``diverged``:
    the criterion (``DIVERGED``) that makes a trial infeasible on the curves and in the
    summary's ``percent_infeasible`` (the table has both)."""
    if diverged not in DIVERGED:
        raise ValueError(f"diverged={diverged!r}: choose one of {list(DIVERGED)}")
    out.mkdir(parents=True, exist_ok=True)
    studies = load_studies(storage) if studies is None else studies
    if curve_sampler is None:
        tuned = [s for s in studies if s.sampler != table_sampler]
    else:
        tuned = [s for s in studies if s.sampler == curve_sampler]
    random_runs = [s for s in studies if s.sampler == table_sampler and s.depth in depths]
    write_csv(curve_rows(tuned, diverged), out / "curves.csv", CURVE_FIELDS)
    summaries = study_summaries(tuned, diverged)
    if tuned:
        curves = {
            s.name: tuner_curves(s.values, s.feasible_by(diverged), s.maximize) for s in tuned
        }
        intervals = {r["study"]: r["interval"] for r in summaries}
        plot_curves(tuned, curves, intervals, out / "curves.png", conf_dir)
    table = infeasible_table(random_runs, conf_dir)
    write_csv(table, out / "infeasible.csv", INFEASIBLE_COLUMNS)
    (out / "infeasible.md").write_text(table_markdown(table, depths, conf_dir))
    key = "percent" if diverged == "nonfinite" else "above_percent"
    low, high = (
        ("percent_low", "percent_high") if diverged == "nonfinite" else ("above_low", "above_high")
    )
    summary = {
        "diverged": diverged,
        "best": {r["study"]: r["best"] for r in summaries},
        "median": {r["study"]: r["median"] for r in summaries},
        "best_95": {r["study"]: r["interval"]["best"] for r in summaries},
        "median_95": {r["study"]: r["interval"]["median"] for r in summaries},
        "percent_infeasible": {f"{r['cell']}-d{r['depth']}": r[key] for r in table},
        "percent_infeasible_95": {f"{r['cell']}-d{r['depth']}": [r[low], r[high]] for r in table},
        "percent_nonfinite": {f"{r['cell']}-d{r['depth']}": r["percent"] for r in table},
        "percent_loss_above_start": {
            f"{r['cell']}-d{r['depth']}": r["above_percent"] for r in table
        },
        "settings": {f"{r['cell']}-d{r['depth']}": r["trials"] for r in table},
        "most_trainable": verdicts(tuned, diverged),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
