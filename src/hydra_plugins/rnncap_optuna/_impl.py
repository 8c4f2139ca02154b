"""The work of the sweeper: parse the search space, open (or resume) the Optuna study of each
point of the sweep, then ask trials, launch them as Hydra jobs and tell Optuna the results,
until every study holds ``n_trials`` finished (complete or pruned) trials.

- **Grid** (``hydra.sweeper.grid=[depth, model.budget]``): those keys' command-line values
  (``depth=1,2``) give one study per combination instead of a searched dimension; every round
  asks each unfinished study for its trials and launches all their jobs as one batch. A point
  whose config rnncap refuses (the +RNN at depth 1) is skipped with a note.
- **Populations** (``hydra.sweeper.population=K``): trials are asked K at a time, grouped by the
  settings that change the computation (everything but the per-member keys of
  ``rnncap.core.population.MEMBER_KEYS``: cell, depth, precision, ...; the optimizer class,
  nonlinearity, recurrent init and clipping are per-member), and each group runs as one
  ``model.population`` job; every member's row of its
  ``metrics.json`` is told to its own trial. Each member keeps the sweep's seed, so member k is
  the trial as a solo job would run it.
- **Pruning** (``hydra.sweeper.pruner``): every job gets its trials' numbers and the storage
  (``trial.*``, ``rnncap.core.trial_report``), reports its objective at every evaluation as an
  intermediate value and stops (a population: freezes) what the pruner prunes. Pruned trials
  are told PRUNED (Optuna keeps their last reported value) with ``status = pruned``.
- **Parallel jobs** (``hydra.sweeper.n_jobs`` with ``hydra/launcher=joblib``): a round asks
  about n_jobs populations of K trials in all, at least K per unfinished study (one study:
  K x n_jobs; a grid of at least n_jobs studies: K each); joblib's worker processes live
  across rounds (imports paid once each).
- **Progress**: a line per finished trial (study, number, value, status, best so far, trials
  per hour) and a summary per study.

A trial whose run diverged (the task function returns None and the run's ``metrics.json`` says
``status: diverged``, or it returns a non-finite number) is *infeasible*: it is told COMPLETE
with the worst possible value (-inf when maximising, +inf when minimising) and user attribute
``status = diverged``, so ``study.best_trial`` skips it. Samplers that take a
``constraints_func`` (GP, TPE) get ``diverged_constraint``: it turns that attribute into the
constraint (1 diverged, 0 feasible) that Optuna stores as the trial's ``constraints`` system
attribute and its samplers read, so they learn to avoid the region. ``constraints_func`` is
public on every admitted Optuna (experimental in 4.x; in 5.x deprecated for
``Trial.set_constraint``, which 4.x lacks, and removed in 7.0). Only a crash (an exception in
the job) is a FAIL, bounded by ``max_failure_rate``; a crashed population fails all its trials.

Resuming: a rerun of the same command resumes every study to ``n_trials``. With SQLite one
process owns a study, so trials a killed sweep left RUNNING are marked failed and their
settings asked again. Shared studies (``rnncap.core.storage``): N workers running the same
command join one study in a journal file or on PostgreSQL. Each asks only what is still
missing, so a study ends with between ``n_trials`` and ``n_trials + (N - 1) * n_jobs *
population`` finished trials. On PostgreSQL every worker beats a heartbeat for its running
trials; a trial whose worker died (kill -9) goes stale, and the next worker to ask marks it
failed and enqueues its settings again.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import Trial, TrialState

from hydra_plugins.rnncap_optuna._credentials import keep_password_out
from hydra_plugins.rnncap_optuna._populations import group_trials, population_overrides
from hydra_plugins.rnncap_optuna._progress import Progress, finished, study_results
from hydra_plugins.rnncap_optuna._space import (
    ParamSpec,
    parse_search_space,
    split_grid,
    suggest,
    trial_overrides,
)
from hydra_plugins.rnncap_optuna._study import (
    check_settings,
    default_study_name,
    fail_abandoned,
    fixed_settings,
    heartbeat,
    make_sampler,
    reap_stale,
    task_direction,
)
from hydra_plugins.rnncap_optuna._trials import tell, trial_link
from rnncap.base.errors import ConfigError
from rnncap.core.population import population_refusal, search_refusal
from rnncap.core.storage import absolute_storage, masked, open_storage, shared
from rnncap.core.trial_report import make_pruner
from rnncap.core.validate import validate

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")


def validate_point(config: DictConfig) -> None:
    """rnncap's checks of a point's run config (as every job would run them)."""
    run = copy.deepcopy(config)
    with open_dict(run):
        run.output_dir = "."  # a job's own folder: unknown before it runs
        run.pop("hydra", None)
    validate(run)


@dataclass
class Point:
    """One study of a sweep (a grid has one per combination of its keys' values)."""

    study: optuna.Study
    space: dict[str, ParamSpec]
    fixed: dict[str, str]
    known: dict[str, Any]
    objective: str
    seed: int
    progress: Progress
    subdir: str | None  # grid: the study's folder in the sweep dir


class OptunaSweeperImpl:
    """See the module docstring; the public class is ``sweeper.RnncapOptunaSweeper``."""

    def __init__(
        self,
        sampler: Any,
        direction: str | None,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        heartbeat_interval: int = 10,
        grace_period: int = 30,
        population: int = 1,
        pruner: str | None = None,
        pruner_args: DictConfig | None = None,
        grid: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        if direction not in (None, *DIRECTIONS):
            raise ConfigError(f"hydra.sweeper.direction={direction!r}; choose one of {DIRECTIONS}")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("population", population)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value!r} is out of range: must be >= 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate} is out of range: in [0, 1]"
            )
        self.sampler, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.population = max_failure_rate, population
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        if not 0 < heartbeat_interval < grace_period:
            raise ConfigError(
                f"hydra.sweeper.heartbeat_interval={heartbeat_interval}, "
                f"grace_period={grace_period}: need 0 < heartbeat_interval < grace_period"
            )
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.pruner = pruner
        self.pruner_args = OmegaConf.to_container(pruner_args) if pruner_args else {}
        make_pruner(pruner, self.pruner_args)  # an unknown pruner or bad arguments: fail now
        self.grid = list(grid or [])
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"hydra.sweeper.timeout={timeout} is out of range: must be > 0")
        self.timeout = timeout

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        # what the jobs open and every record shows: the storage without its password
        self.job_storage = keep_password_out(self.storage, config)
        self.opened: str | optuna.storages.BaseStorage | None = None
        launcher = config.hydra.launcher
        if "n_jobs" in launcher and launcher.n_jobs == -1:  # joblib's "all cores": ours instead
            config = copy.deepcopy(config)
            with open_dict(config):
                config.hydra.launcher.n_jobs = self.n_jobs
        elif self.n_jobs > 1 and "n_jobs" not in launcher:
            log.warning(
                "hydra.sweeper.n_jobs=%d with launcher %s runs its jobs one after another: "
                "add hydra/launcher=joblib for one process per job",
                self.n_jobs,
                launcher._target_.rsplit(".", 1)[-1],
            )
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def open_study(self, config: DictConfig, label: str | None = None) -> optuna.Study:
        """The study of one point of the sweep (``config``: its composed config), created or
        resumed; a grid point's ``label`` is appended to a given ``study_name``."""
        objective, declared = task_direction(config)
        direction = self.direction or declared
        name = self.study_name or default_study_name(config, self.sampler)
        if self.study_name and label:
            name = f"{name}-{label}"
        if self.opened is None:  # one storage object for every study of the sweep
            self.opened = open_storage(
                self.storage,
                self.config.hydra.runtime.cwd,
                self.heartbeat_interval,
                self.grace_period,
            )
        storage = self.opened
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study"
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, direction=direction, load_if_exists=True
            )
        finally:
            optuna.logging.set_verbosity(verbosity)
        if study.direction.name.lower() != direction:
            raise ConfigError(
                f"hydra.sweeper.direction={direction}: study {name!r} exists in "
                f"{masked(self.storage)} with direction {study.direction.name.lower()}; give "
                "another hydra.sweeper.study_name or the study's direction"
            )
        study.sampler = make_sampler(self.sampler, len(study.get_trials(deepcopy=False)))
        attrs = {"task": config.task.name, "cell": config.cell.name, "depth": config.depth}
        attrs |= {"objective": objective, "sampler": self.sampler.func.__name__}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        log.info("study %s (%s %s) in %s", name, direction, objective, masked(self.storage))
        return study

    def known_values(self, fixed: Mapping[str, str]) -> dict[str, Any]:
        """Values of keys outside the search space, for ``when`` conditions: group choices
        and the command line's fixed values."""
        known: dict[str, Any] = dict(self.config.hydra.runtime.choices)
        known |= {k.lstrip("+~"): v.split("=", 1)[1] for k, v in fixed.items()}
        return known

    def open_point(
        self, arguments: list[str], point: Mapping[str, str], grid: bool
    ) -> Point | None:
        """One study of the sweep: its search space, fixed overrides and resumed study. A grid
        point whose config is refused (the +RNN at depth 1) is skipped with a note (None); a
        refused config without a grid ends the sweep before any trial."""
        _, fixed = parse_search_space(self.params, [*arguments, *point.values()])
        config = self.hydra_context.config_loader.load_sweep_config(
            self.config, list(fixed.values())
        )
        try:
            validate_point(config)
        except ConfigError as err:
            if not grid:
                raise
            log.info("skip %s: %s", " ".join(point.values()), err)
            return None
        # the space as this point resolves it (a range may scale with a grid key: b with
        # model.budget in the capacity space)
        params = config.hydra.sweeper.get("params") if "hydra" in config else None
        params = OmegaConf.to_container(params, resolve=True) if params else self.params
        space, fixed = parse_search_space(params, [*arguments, *point.values()])
        self.check_population(config, space)
        label = "-".join(f"{k.rsplit('.', 1)[-1]}{v.split('=', 1)[1]}" for k, v in point.items())
        study = self.open_study(config, label if grid else None)
        check_settings(study, fixed_settings(config, list(space)), masked(self.storage))
        if not shared(self.storage):  # one process owns the study: nothing else is running
            fail_abandoned(study)
        else:  # a rerun: a dead worker's trials, even when the study is complete
            reap_stale(study)
        objective, _ = task_direction(config)
        known = self.known_values(fixed)
        seed = int(known.get("seed", config.seed))
        log.info("%s: %d of %d trials finished", study.study_name, finished(study), self.n_trials)
        progress = Progress(study, objective, self.n_trials)
        subdir = study.study_name if grid else None
        return Point(study, space, fixed, known, objective, seed, progress, subdir)

    def sweep(self, arguments: list[str]) -> list[optuna.Study]:
        """Run every point's study to ``n_trials`` finished trials; each round asks every
        unfinished study for its trials and launches all their jobs as one batch."""
        warnings.filterwarnings("ignore", message="Clip non-finite values")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")  # we beat, not optimize
        arguments, grid = split_grid(arguments, self.grid)
        opened = [self.open_point(arguments, point, bool(self.grid)) for point in grid]
        points = [p for p in opened if p is not None]
        if not points:
            raise ConfigError(f"hydra.sweeper.grid={self.grid}: every point is refused")
        storage = absolute_storage(self.job_storage, self.config.hydra.runtime.cwd)
        failed, start = 0, time.monotonic()
        while rounds := [p for p in points if self.n_trials - finished(p.study) > 0]:
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                log.info("hydra.sweeper.timeout=%s s reached: no new trials", self.timeout)
                break
            batch, owners, asked = [], [], []
            # about n_jobs populations in all, at least one per study: a grid's studies keep
            # the workers busy together, and each study's sampler sees results sooner
            per_study = self.population * max(1, math.ceil(self.n_jobs / len(rounds)))
            for point in rounds:
                reap_stale(point.study)  # a dead worker's: asked again
                size = min(self.n_trials - finished(point.study), per_study)
                if size <= 0:  # workers sharing the study finished it since the round began
                    continue
                trials = [point.study.ask() for _ in range(size)]
                asked.append((point, trials))
                for overrides, members in self.point_jobs(point, trials, storage):
                    batch.append(overrides)
                    owners.append((point, members))
            everyone = [t for _, trials in asked for t in trials]
            if not everyone:
                continue  # nothing left to ask: the loop's condition sees every study finished
            with heartbeat(asked[0][0].study, everyone, self.heartbeat_interval):
                self.validate_batch(asked, batch)
                first = everyone[0].number
                jobs = self.launcher.launch(batch, initial_job_idx=first)
            errors = []
            for (point, members), job in zip(owners, jobs, strict=True):
                if (error := tell(point.study, members, job, point.objective)) is not None:
                    errors.append(error)
            for point, trials in asked:
                backend = point.study._storage  # noqa: SLF001
                point.progress.round([backend.get_trial(t._trial_id) for t in trials])
            failed += len(errors)
            # failed trials do not count as finished: never retry more than n_trials times
            if errors and (
                len(errors) / len(jobs) > self.max_failure_rate
                or failed >= self.n_trials * len(points)
            ):
                raise errors[0]
        for point in points:
            reap_stale(point.study)  # a worker that died during this sweep
            point.progress.summary()
        self.write_results([p.study for p in points])
        return [p.study for p in points]

    def point_jobs(
        self, point: Point, trials: list[Trial], storage: str | None
    ) -> Iterator[tuple[list[str], list[Trial]]]:
        """(overrides, trials) of every job of one point's asked trials: a solo job per trial,
        or one population job per group of trials that share their computation."""
        chosen = [suggest(t, point.space, point.known) for t in trials]
        for group in group_trials(chosen, self.population):
            members = [chosen[i] for i in group]
            if len(group) == 1:
                job = trial_overrides(members[0], point.fixed)
            else:
                job = [*point.fixed.values(), *population_overrides(members, point.seed)]
            numbers = [trials[i].number for i in group]
            name = point.study.study_name
            job += trial_link(storage, name, numbers, self.pruner, self.pruner_args)
            if point.subdir is not None:  # grid: each study's runs in their own folder
                job.append(f"hydra.sweep.subdir={point.subdir}/{numbers[0]}")
            yield job, [trials[i] for i in group]

    def check_population(self, config: DictConfig, space: Mapping[str, ParamSpec]) -> None:
        """Population trials need a task that trains as a population, and the space's b a range
        the task can draw: say so before any trial."""
        samples = space.get("task.samples")
        if (reason := search_refusal(config, samples and samples.distribution)) is not None:
            raise ConfigError(reason)
        if self.population > 1 and (reason := population_refusal(config)) is not None:
            raise ConfigError(f"hydra.sweeper.population={self.population} {reason}")

    def validate_batch(self, asked: list[tuple[Point, list[Trial]]], batch: list) -> None:
        """Compose every job's config before launching (a bad key fails the trials now)."""
        try:
            for overrides in batch:
                self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception:
            for point, trials in asked:
                for trial in trials:
                    point.study.tell(trial, state=TrialState.FAIL)
            raise

    def write_results(self, studies: list[optuna.Study]) -> None:
        """optimization_results.yaml in the sweep dir: per study, the best feasible trial and
        counts (one study: its mapping; a grid: a list of them)."""
        results = [study_results(study) for study in studies]
        out = Path(self.config.hydra.sweep.dir)
        out.mkdir(parents=True, exist_ok=True)
        node = OmegaConf.create(results[0] if len(results) == 1 else results)
        OmegaConf.save(node, out / "optimization_results.yaml")
        for result in results:
            log.info("best: %s", {k: v for k, v in result.items() if k != "best_metrics"})
