"""A job and its trials: the overrides that link a job to its trials, and the job's results
told back to them (one trial per population member)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from optuna.trial import Trial, TrialState

from hydra_plugins.rnncap_optuna._space import format_list, format_value

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def run_dir(job: JobReturn) -> Path:
    """The job's output directory (its working directory only when Hydra changed into it)."""
    if job.hydra_cfg is not None:
        return Path(job.hydra_cfg.hydra.runtime.output_dir)
    return Path(job.working_dir or ".")


def read_metrics(job: JobReturn) -> dict[str, Any]:
    """The run's metrics.json (empty when the job wrote none)."""
    path = run_dir(job) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def outcome(job: JobReturn, objective: str) -> list[tuple[str, float | None, dict[str, Any]]]:
    """(status, objective, metrics) of every trial a finished job trained: one for a solo run,
    one per member for a population (its ``members`` rows). Status ``ok``, ``diverged`` or
    ``pruned``. Raises the job's own exception when it crashed."""
    value = job.return_value  # re-raises a crashed job's exception
    metrics = read_metrics(job)
    if "members" in metrics:
        return [member_outcome(row, row.get(objective)) for row in metrics["members"]]
    if value is None:
        if metrics.get("status") != "diverged":
            raise ValueError("the task function returned None but its run did not diverge")
        return [("diverged", None, metrics)]
    return [member_outcome(metrics, float(value))]


def member_outcome(metrics: dict[str, Any], value: Any) -> tuple[str, float | None, dict]:
    """One trial's (status, objective, metrics) from its metrics row."""
    status = metrics.get("status", "ok")
    if value is None or not math.isfinite(float(value)):
        return ("pruned" if status == "pruned" else "diverged"), None, metrics
    return status, float(value), metrics


def record(study: optuna.Study, trial: Trial, result: tuple, directory: Path) -> str:
    """Tell the study one trial's result; return its status."""
    status, value, metrics = result
    trial.set_user_attr("status", status)
    trial.set_user_attr("run_dir", str(directory))
    for key, metric in metrics.items():
        if key not in ("status", "members") and (
            metric is None or isinstance(metric, (int, float, str))
        ):
            trial.set_user_attr(f"metrics.{key}", metric)
    if status == "pruned":  # Optuna keeps the last reported value as the trial's value
        study.tell(trial, state=TrialState.PRUNED)
        return status
    if status == "diverged":
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        value = -math.inf if maximize else math.inf
        log.info("trial %d diverged: recorded as infeasible", trial.number)
    study.tell(trial, value)
    return status


def tell(
    study: optuna.Study, trials: Sequence[Trial], job: JobReturn, objective: str
) -> Exception | None:
    """Record one job's results on its trials (one per population member); return the
    exception of a crashed job (its trials fail)."""
    try:
        results = outcome(job, objective)
        if len(results) != len(trials):
            raise ValueError(f"the job reported {len(results)} results for {len(trials)} trials")
    except Exception as err:  # noqa: BLE001  (any crash of the task is a failed trial)
        for trial in trials:
            log.warning("trial %d failed: %s", trial.number, err)
            study.tell(trial, state=TrialState.FAIL)
        return err
    for trial, result in zip(trials, results, strict=True):
        record(study, trial, result, run_dir(job))
    return None


def trial_link(
    storage: str | None, study: str, numbers: Sequence[int], pruner: str | None, args: dict
) -> list[str]:
    """The overrides that let a job report to its trials (``rnncap.core.trial_report``)."""
    link = [f"trial.study='{study}'", f"trial.numbers={format_list(numbers)}"]
    link.append(f"trial.storage='{storage}'" if storage else "trial.storage=null")
    if pruner is not None:
        link.append(f"trial.pruner={pruner}")
        if args:
            body = ",".join(f"{k}:{format_value(v)}" for k, v in args.items())
            link.append(f"trial.pruner_args={{{body}}}")
    return link
