"""A run's link to its tuner: at every evaluation, each trial's objective is reported to the
Optuna study as an intermediate value, and the study's pruner says whether to stop it.

The sweeper sets ``trial.storage``, ``trial.study`` and ``trial.numbers`` (one trial per
population member) and the pruner (``hydra.sweeper.pruner`` -> ``trial.pruner``). A run with no
link (``trial.study=null``: every run outside a tuner) reports nothing. A solo run reports
through ``PruningCallback``; a population (``rnncap.core.population``) calls ``report`` with
every member's value and freezes the members it prunes. A pruned run finishes normally with
``status: pruned`` and its metrics at the step where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import optuna
import pytorch_lightning as pl
from hydra.utils import get_class
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError
from rnncap.core.storage import open_storage
from rnncap.tasks.base import TaskDataModule

log = logging.getLogger(__name__)
PRUNERS = {  # hydra.sweeper.pruner -> Optuna's pruner class
    "median": "optuna.pruners.MedianPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
}


def make_pruner(name: str | None, args: dict[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """Optuna's pruner named ``name`` with ``args``; null = never prune."""
    if name is None:
        return optuna.pruners.NopPruner()
    if name not in PRUNERS:
        allowed = ", ".join(["null", *PRUNERS])
        raise ConfigError(f"hydra.sweeper.pruner={name!r} is unknown; choose one of {allowed}")
    try:
        return get_class(PRUNERS[name])(**(args or {}))
    except (TypeError, ValueError) as err:
        shown = dict(args or {})
        raise ConfigError(f"hydra.sweeper.pruner_args={shown} for {name}: {err}") from None


class TrialReporter:
    """The trials ``numbers`` of ``study`` in ``storage``, reported to as one population."""

    def __init__(
        self, storage: str, study: str, numbers: Sequence[int], pruner: optuna.pruners.BasePruner
    ) -> None:
        backend = open_storage(storage, os.getcwd())
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            self.study = optuna.load_study(study_name=study, storage=backend, pruner=pruner)
        finally:
            optuna.logging.set_verbosity(verbosity)
        study_id = self.study._storage.get_study_id_from_name(study)  # noqa: SLF001
        ids = [
            self.study._storage.get_trial_id_from_study_id_trial_number(study_id, n)  # noqa: SLF001
            for n in numbers
        ]
        self.trials = [optuna.trial.Trial(self.study, trial_id) for trial_id in ids]
        self.numbers = list(numbers)

    def report(self, step: int, values: Sequence[float | None]) -> list[bool]:
        """Report member k's ``values[k]`` at ``step`` (None: not running, nothing reported);
        True where the pruner stops that member. Every value is reported before the pruner is
        asked, best first, so a pruner that compares running trials (successive halving)
        judges members by their values, not by their order in the population."""
        if len(values) != len(self.trials):
            raise ValueError(f"{len(values)} values for {len(self.trials)} trials")
        ranked = [k for k, v in enumerate(values) if v is not None and math.isfinite(v)]
        for k in ranked:
            self.trials[k].report(float(values[k]), step)
        maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked.sort(key=lambda k: values[k], reverse=maximize)
        pruned = [False] * len(values)
        for k in ranked:
            pruned[k] = self.trials[k].should_prune()
        return pruned


def build_reporter(cfg: DictConfig, members: int = 1) -> TrialReporter | None:
    """The reporter of ``cfg.trial``, or None when no tuner linked this run."""
    link = cfg.get("trial")
    if link is None or link.study is None:
        return None
    numbers = list(link.numbers or [])
    if len(numbers) != members:
        raise ConfigError(
            f"trial.numbers has {len(numbers)} trial numbers for {members} model(s): "
            "the tuner sets one per population member"
        )
    pruner = make_pruner(link.pruner, dict(link.pruner_args or {}))
    return TrialReporter(link.storage, link.study, numbers, pruner)


class PruningCallback(pl.Callback):
    """A solo run's objective on the evaluation set, reported at every evaluation; stops the
    run when the pruner says so (``pruned``)."""

    def __init__(self, reporter: TrialReporter, task: TaskDataModule, params: int) -> None:
        self.reporter, self.task, self.params = reporter, task, params
        self.pruned = False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = self.task.evaluate(module.model, self.params).get(self.task.objective)
        if self.reporter.report(trainer.global_step, [value])[0]:
            log.info("trial %d pruned at step %d", self.reporter.numbers[0], trainer.global_step)
            self.pruned = True
            trainer.should_stop = True
