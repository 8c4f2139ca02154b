"""What a sweep says as it goes: a line per finished trial, a summary per study, and the
results file (``optimization_results.yaml``) of its best trials."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)


def finished(study: optuna.Study) -> int:
    """Trials that produced a result (diverged and pruned ones included): what ``n_trials``
    counts."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


class Progress:
    """One line per finished trial (number, value, status, best so far, trials per hour) and a
    summary at the end."""

    def __init__(self, study: optuna.Study, objective: str, n_trials: int) -> None:
        self.study, self.objective, self.n_trials = study, objective, n_trials
        self.start, self.done = time.monotonic(), 0
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.best: tuple[float, int] | None = None

    def rate(self) -> float:
        """Trials per hour of this sweep so far."""
        return self.done / max(time.monotonic() - self.start, 1e-9) * 3600

    def round(self, trials: Sequence[FrozenTrial]) -> None:
        """One line per trial of a finished round. The round's trials are counted together
        before any line (its jobs ran as one batch), so every line of a round shows the same
        rate: it changes from round to round, not within one."""
        self.done += len(trials)
        rate, count = self.rate(), finished(self.study)
        for trial in trials:
            self.line(trial, rate, count)

    def line(self, trial: FrozenTrial, rate: float, count: int) -> None:
        value = trial.value
        status = trial.user_attrs.get("status", trial.state.name.lower())
        if status == "ok" and value is not None and math.isfinite(value):
            best = None if self.best is None else self.best[0]
            if best is None or (value > best if self.maximize else value < best):
                self.best = (value, trial.number)
        shown = "-" if value is None or not math.isfinite(value) else f"{value:.6g}"
        best = "-" if self.best is None else f"{self.best[0]:.6g} (trial {self.best[1]})"
        log.info(
            "%s trial %d: %s=%s %s | best %s | %d of %d finished | %.0f trials/h",
            self.study.study_name,
            trial.number,
            self.objective,
            shown,
            status,
            best,
            count,
            self.n_trials,
            rate,
        )

    def summary(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        diverged = sum(t.user_attrs.get("status") == "diverged" for t in trials)
        log.info(
            "study %s: %d complete (%d diverged), %d pruned, %d failed; this sweep %d trials in "
            "%.0f s (%.0f trials/h)",
            self.study.study_name,
            counts["complete"],
            diverged,
            counts["pruned"],
            counts["fail"],
            self.done,
            time.monotonic() - self.start,
            self.rate(),
        )


def study_results(study: optuna.Study) -> dict[str, Any]:
    """A study's best feasible trial and its counts of finished, diverged and pruned trials."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    diverged = sum(t.user_attrs.get("status") == "diverged" for t in trials)
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    results: dict[str, Any] = {"study": study.study_name, "trials": len(trials) + pruned}
    results |= {"diverged": diverged, "pruned": pruned}
    if diverged < len(trials):
        best = study.best_trial
        results |= {"best_trial": best.number, "best_value": best.value}
        results["best_params"] = best.params
        results["best_metrics"] = {
            k.removeprefix("metrics."): v
            for k, v in best.user_attrs.items()
            if k.startswith("metrics.")
        }
    return results
