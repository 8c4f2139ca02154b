"""Trainability report (Collins et al. 2017, section 4): read from an Optuna study storage.

* Tuner curves (the paper's Figure 4): for each study (one cell and depth), the objective of
  trial i, the running median of the feasible objectives of trials 0..i, and the best feasible
  objective so far (max when the study maximises, min when it minimises).
* Percent infeasible (the paper's Table 1): for the random-settings studies, the share of
  trials whose training diverged, per cell and depth.

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
    feasible: list[bool]  # complete and not diverged: what the curves use
    pruned: list[bool] = field(default_factory=list)  # stopped early by the tuner's pruner


def load_studies(storage: str) -> list[StudyTrials]:
    """Every study in ``storage`` with its finished trials, COMPLETE and PRUNED (the sweeper's
    study attributes give cell, depth, sampler and objective). A pruned trial's value is the
    last one it reported: it counts as a setting that did not diverge, not on the curves."""
    import optuna

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
                feasible=[
                    t.state == optuna.trial.TrialState.COMPLETE
                    and t.user_attrs.get("status", "ok") != "diverged"
                    for t in trials
                ],
                pruned=[t.state == optuna.trial.TrialState.PRUNED for t in trials],
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
        pruned = s.pruned or [False] * len(s.values)
        for i, (value, ok) in enumerate(zip(s.values, s.feasible, strict=True)):
            status = "ok" if ok else "pruned" if pruned[i] else "diverged"
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


def infeasible_table(studies: Sequence[StudyTrials], conf_dir: Path = CONF_DIR) -> list[dict]:
    """Rows (cell, depth, trials, diverged, pruned, percent diverged), trials pooled over
    studies of the same cell and depth, sorted by cell (display order) then depth. Pruned
    trials count as finished settings that did not diverge, and are counted apart."""
    pooled: dict[tuple[str, int], list[int]] = {}
    for s in studies:
        counts = pooled.setdefault((s.cell, s.depth), [0, 0, 0])
        pruned = s.pruned or [False] * len(s.feasible)
        counts[0] += len(s.feasible)
        counts[1] += sum(not ok and not p for ok, p in zip(s.feasible, pruned, strict=True))
        counts[2] += sum(pruned)
    return [
        {
            "cell": cell,
            "depth": depth,
            "trials": n,
            "diverged": bad,
            "pruned": cut,
            "percent": round(100.0 * bad / n, 1) if n else None,  # None: no finished trial
        }
        for (cell, depth), (n, bad, cut) in sorted(
            pooled.items(), key=lambda item: (cell_sort_key(item[0][0], conf_dir), item[0][1])
        )
    ]


def table_markdown(rows: Sequence[dict], depths: Sequence[int], conf_dir: Path = CONF_DIR) -> str:
    """Percent infeasible as a cell x depth markdown table ("-" where nothing ran), a row per
    cell in the order of ``rows``, named by its display label."""
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    cell_of = {(r["cell"], r["depth"]): r for r in rows}
    lines = ["| cell | " + " | ".join(f"depth {d}" for d in depths) + " |"]
    lines.append("|---|" + "---|" * len(depths))
    for cell in cells:
        entries = []
        for d in depths:
            r = cell_of.get((cell, d))
            done = r is not None and r["trials"] > 0
            entries.append(f"{r['percent']} ({r['diverged']}/{r['trials']})" if done else "-")
        lines.append(f"| {cell_label(cell, conf_dir)} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(studies: Sequence[StudyTrials], path: Path, conf_dir: Path = CONF_DIR) -> None:
    """One panel per cell; per depth the best-so-far (solid) and running median (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({s.cell for s in studies}, key=lambda c: cell_sort_key(c, conf_dir))
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    depths = sorted({s.depth for s in studies})
    for ax, cell in zip(axes[0], cells, strict=True):
        for s in (s for s in studies if s.cell == cell):
            medians, bests = tuner_curves(s.values, s.feasible, s.maximize)
            color = colors[depths.index(s.depth) % len(colors)]
            ax.plot(bests, color=color, label=f"depth {s.depth} best")
            ax.plot(medians, color=color, linestyle="--", label=f"depth {s.depth} median")
        ax.set_title(cell_label(cell, conf_dir))
        ax.set_xlabel("tuner trial")
        ax.set_ylabel(studies[0].objective if studies else "objective")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(
    storage: str,
    out: Path,
    curve_sampler: str | None = None,
    table_sampler: str = "RandomSampler",
    depths: Sequence[int] = (1, 8),
    conf_dir: Path = CONF_DIR,
) -> dict:
    """Write curves.{csv,png} and infeasible.{csv,md} plus summary.json into ``out``.
    ``curve_sampler`` limits the curves to studies of one sampler (None = all)."""
    out.mkdir(parents=True, exist_ok=True)
    studies = load_studies(storage)
    tuned = [s for s in studies if curve_sampler in (None, s.sampler)]
    random_runs = [s for s in studies if s.sampler == table_sampler and s.depth in depths]
    write_csv(curve_rows(tuned), out / "curves.csv", CURVE_FIELDS)
    if tuned:
        plot_curves(tuned, out / "curves.png", conf_dir)
    table = infeasible_table(random_runs, conf_dir)
    write_csv(table, out / "infeasible.csv", INFEASIBLE_COLUMNS)
    (out / "infeasible.md").write_text(table_markdown(table, depths, conf_dir))
    best = {}
    for s in tuned:
        _, bests = tuner_curves(s.values, s.feasible, s.maximize)
        best[s.name] = bests[-1] if bests and math.isfinite(bests[-1]) else None
    summary = {
        "best": best,
        "percent_infeasible": {f"{r['cell']}-d{r['depth']}": r["percent"] for r in table},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
