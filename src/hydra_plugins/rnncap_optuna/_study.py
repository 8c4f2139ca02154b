"""One study of a sweep: its name, direction and sampler, the trials a killed sweep left
running, and the heartbeats of the trials it runs."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.utils import get_class
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, Trial, TrialState

from rnncap.core.storage import retry_failed

log = logging.getLogger(__name__)


def fail_abandoned(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed sweep can never finish: mark them failed and ask their
    settings again (as a shared storage does for a dead worker's trials)."""
    retry = retry_failed()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning("trial %d was left running by an earlier sweep: marked failed", trial.number)
        failed = study.tell(trial.number, state=TrialState.FAIL)
        retry(study, failed)


def reap_stale(study: optuna.Study) -> list[int]:
    """Fail the trials of dead workers (no heartbeat for ``grace_period`` s) and enqueue their
    settings again, whether or not the study still needs trials (a complete study keeps no
    trial RUNNING for ever); returns their numbers. A storage without heartbeats (SQLite,
    journal file) has no stale trials."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    optuna.storages.fail_stale_trials(study)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    reaped = [t.number for t in running if t.number not in still]
    for number in reaped:
        log.warning(
            "%s trial %d: its worker stopped beating its heartbeat: marked failed, its "
            "settings queued to be asked again",
            study.study_name,
            number,
        )
    return reaped


def diverged_constraint(trial: FrozenTrial) -> tuple[float]:
    """The samplers' ``constraints_func``: 1.0 (infeasible) for a diverged trial, else 0.0.
    Optuna calls it as the trial is told, after ``tell`` has set the ``status`` attribute."""
    return (0.0 if trial.user_attrs.get("status") == "ok" else 1.0,)


def make_sampler(factory: functools.partial, done: int) -> optuna.samplers.BaseSampler:
    """The configured sampler; a seeded one resuming a study that holds ``done`` trials (any
    state: a rerun after a kill that finished none must not replay them either) gets
    seed + done, so that a rerun continues instead of replaying the first proposals. A
    sampler that takes constraints gets ``diverged_constraint`` (module doc)."""
    seed = factory.keywords.get("seed")
    kwargs: dict[str, Any] = {"seed": None if seed is None else seed + done}
    if "constraints_func" in inspect.signature(factory.func).parameters:
        kwargs["constraints_func"] = diverged_constraint
    with warnings.catch_warnings():
        # Optuna 4 calls the argument experimental, 5 deprecated (removal in 7; optuna < 6 here)
        warnings.filterwarnings("ignore", message=r".*`constraints_func`")
        return factory(**kwargs)


def default_study_name(config: DictConfig, factory: functools.partial) -> str:
    """<task>-<cell>-d<depth>-<p<budget>|n<hidden>>-<sampler>, e.g. capacity-rnn-d1-p500-gp."""
    model = config.model
    size = f"n{model.hidden}" if model.hidden is not None else f"p{model.budget}"
    kind = factory.func.__name__.removesuffix("Sampler").lower()
    return f"{config.task.name}-{config.cell.name}-d{config.depth}-{size}-{kind}"


def task_direction(config: DictConfig) -> tuple[str, str]:
    """(objective, direction) declared by the configured task class."""
    cls = get_class(config.task._target_)
    return cls.objective, cls.objective_direction


@contextmanager
def heartbeat(study: optuna.Study, trials: Sequence[Trial], interval: int) -> Iterator[None]:
    """Beat the trials' heartbeats every ``interval`` s while they run, where the storage keeps
    heartbeats (PostgreSQL here); other workers fail a trial whose beats stop."""
    storage = study._storage  # Optuna's own study.optimize beats through the same private handle
    if not optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in trials:
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
