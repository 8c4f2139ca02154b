"""Tuned studies as runs: the finished trials of Optuna studies (written by the sweeper
``hydra_plugins.rnncap_optuna``) in the shape of ``metrics.json`` rows, so that analyses of
finished runs (the capacity fit: capacity = max bits over all runs of a model size) can take
their maxima from tuner trials as well.

The sweeper stores each trial's ``metrics.json`` values as user attributes ``metrics.<key>``
and its outcome as ``status`` (``ok`` or ``diverged``); crashed and unfinished trials have
neither and are left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

METRICS_PREFIX = "metrics."


def open_study_storage(url: str) -> Any:
    """What Optuna opens for a study storage URL as ``hydra.sweeper.storage`` takes it:
    ``sqlite:///FILE``, ``journal:///FILE`` (Optuna's journal file) or a database URL, a
    relative file taken from the working directory."""
    from rnncap.core.storage import open_storage

    return open_storage(url, os.getcwd())


def trial_row(study: str, number: int, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """One trial's user attributes -> a ``metrics.json`` row with ``run = <study>#<trial>``;
    None when the trial recorded no metrics."""
    row = {k[len(METRICS_PREFIX) :]: v for k, v in attrs.items() if k.startswith(METRICS_PREFIX)}
    if not row or "status" not in attrs:
        return None
    return {**row, "status": attrs["status"], "run": f"{study}#{number}"}


def study_runs(storages: Sequence[str], task: str | None = None) -> list[dict[str, Any]]:
    """The COMPLETE trials of every study in ``storages`` (URLs as ``open_study_storage``
    takes them, e.g. ``sqlite:///results/tune/studies.db``) as run rows; ``task`` keeps only
    that task's."""
    if not storages:
        return []
    import optuna

    rows = []
    for url in storages:
        storage = open_study_storage(url)
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            if task is not None and study.user_attrs.get("task") != task:
                continue
            trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            for trial in sorted(trials, key=lambda t: t.number):
                row = trial_row(study.study_name, trial.number, dict(trial.user_attrs))
                if row is not None:
                    rows.append(row)
    return rows
