"""One study of a sweep: its name, direction and sampler, the trials a killed sweep left
running, and the heartbeats of the trials it runs."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.rnncap_optuna._rounding import RoundingSampler
from rnncap.base.errors import ConfigError
from rnncap.core.storage import retry_failed

log = logging.getLogger(__name__)
SETTINGS_ATTR = "settings"  # the study user attribute that holds its fixed settings
# run keys that do not change what a trial measures: a rerun may change them
UNCOMPARED = (
    "output_dir",
    "trial",
    "logger",
    "experiment_name",
    "save_weights",
    "trainer.checkpoint_every",
    "trainer.enable_progress_bar",
    "hardware",
)
COMPARED = ("hardware.precision",)  # under an uncompared key, but changes the numbers


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
    sampler that takes constraints gets ``diverged_constraint`` (module doc). Its float
    proposals are rounded (``RoundingSampler``): what Optuna records is what the job trains."""
    seed = factory.keywords.get("seed")
    kwargs: dict[str, Any] = {"seed": None if seed is None else seed + done}
    parameters = inspect.signature(factory.func).parameters
    if "constraints_func" in parameters:
        kwargs["constraints_func"] = diverged_constraint
    # conditional keys (momentum) are sampled independently by design: no warning per trial.
    # Samplers that warn by default (GP; TPE before Optuna 4.9) are told not to; TPE since 4.9
    # is quiet unless asked and deprecates the argument, so it is left out there
    quiet = parameters.get("warn_independent_sampling")
    if quiet is not None and quiet.default is True:
        kwargs["warn_independent_sampling"] = False
    with warnings.catch_warnings():
        # Optuna 4 calls the argument experimental, 5 deprecated (removal in 7; optuna < 6 here)
        warnings.filterwarnings("ignore", message=r".*`constraints_func`")
        # TPE's multivariate, group and constant_liar are "experimental" since Optuna 2: chosen
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return RoundingSampler(factory(**kwargs))


def default_study_name(config: DictConfig, factory: functools.partial) -> str:
    """<task>-<cell>-d<depth>-<p<budget>|n<hidden>>[-s<seed>]-<sampler>, e.g.
    capacity-rnn-d1-p500-gp (seed 0) or capacity-rnn-d1-p500-s1-gp: every seed its own study."""
    model = config.model
    size = f"n{model.hidden}" if model.hidden is not None else f"p{model.budget}"
    size += f"-s{config.seed}" if config.seed != 0 else ""
    kind = factory.func.__name__.removesuffix("Sampler").lower()
    return f"{config.task.name}-{config.cell.name}-d{config.depth}-{size}-{kind}"


def fixed_settings(config: DictConfig, searched: Sequence[str]) -> dict[str, Any]:
    """The settings every trial of a study shares: the point's run config (``config``, as the
    sweep composes it before sampling) as dotted keys, without the ``searched`` keys (and
    what lies under them: ``optimizer`` searched covers ``optimizer.*``) and without what does
    not change a result (``UNCOMPARED``)."""
    run = copy.deepcopy(config)
    with open_dict(run):
        run.pop("hydra", None)
        run.output_dir = "."
    flat = flatten(OmegaConf.to_container(run, resolve=True, enum_to_str=True))
    skipped = (*UNCOMPARED, *searched)
    return {
        key: value
        for key, value in flat.items()
        if key in COMPARED or not any(key == s or key.startswith(f"{s}.") for s in skipped)
    }


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {dotted key: value}; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    return flat


def check_settings(study: optuna.Study, settings: dict[str, Any], shown: str | None) -> None:
    """Record the study's fixed settings (user attribute ``settings``) or, when it has them,
    refuse a command that changes one: its trials would mix two experiments. A key only one
    side has (a key added to or removed from the configs since) is not compared."""
    settings = json.loads(json.dumps(settings))  # as the storage keeps them
    stored = study.user_attrs.get(SETTINGS_ATTR) or {}
    for key, value in settings.items():
        if key in stored and stored[key] != value:
            raise ConfigError(
                f"{key}={json.dumps(value)}: study {study.study_name!r} in {shown} was run with "
                f"{key}={json.dumps(stored[key])}; give another hydra.sweeper.study_name for "
                "the new settings, or the study's own"
            )
    if settings.keys() - stored.keys():
        study.set_user_attr(SETTINGS_ATTR, {**stored, **settings})


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
