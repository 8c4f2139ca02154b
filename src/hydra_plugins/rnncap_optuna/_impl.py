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
settings asked again. Shared studies (``storage.py``): N workers running the same command join
one study in a journal file or on PostgreSQL. Each asks only what is still missing, so a study
ends with between ``n_trials`` and ``n_trials + (N - 1) * n_jobs * population`` finished
trials. On PostgreSQL every worker beats a heartbeat for its running trials; a trial whose
worker died (kill -9) goes stale, and the next worker to ask marks it failed and enqueues its
settings again.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.rnncap_optuna.storage import (  # noqa: F401
    absolute_storage,
    open_storage,
    retry_failed,
    shared,
    storage_url,
)
from rnncap.base.errors import ConfigError
from rnncap.core.population import (
    MEMBER_KEYS,
    OPTIONAL_MEMBER_KEYS,
    population_refusal,
    search_refusal,
)
from rnncap.core.trial_report import make_pruner
from rnncap.core.validate import validate

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
DIRECTIONS = ("minimize", "maximize")


# ----------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class ParamSpec:
    """One searched key: its distribution, and the values other keys must have for it to apply
    (``when``: key -> allowed values; e.g. momentum only for SGD and RMSProp)."""

    distribution: BaseDistribution
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


def distribution_from_dict(key: str, node: Mapping[str, Any]) -> BaseDistribution:
    """``{type: float|int|categorical, low, high, log, step, choices}`` -> a distribution."""
    kind = node.get("type")
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(node["choices"]))
        if kind == "float":
            low, high = float(node["low"]), float(node["high"])
            step = None if node.get("step") is None else float(node["step"])
            return FloatDistribution(low, high, log=bool(node.get("log", False)), step=step)
        if kind == "int":
            step = int(node.get("step") or 1)
            log_ = bool(node.get("log", False))
            return IntDistribution(int(node["low"]), int(node["high"]), log=log_, step=step)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"hydra.sweeper.params.{key}: {err}") from None
    raise ValueError(
        f"hydra.sweeper.params.{key}.type={kind!r}; choose one of float, int, categorical"
    )


def distribution_from_override(override: Override) -> BaseDistribution | None:
    """A Hydra sweep override (``a,b``, ``choice(a,b)``, ``range(1,5)``, ``interval(0,1)``,
    ``tag(log, interval(1e-4,1))``, ``int(interval(1,9))``) -> a distribution; None for a plain
    (fixed) value. Hydra intervals are float unless cast with ``int(...)``."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            stop = value.stop - value.step  # range() excludes its stop
            return FloatDistribution(value.start, stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_ = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_)
        return FloatDistribution(value.start, value.end, log=log_)
    raise ValueError(f"{override.input_line}: this sweep kind is not supported")


def parse_search_space(
    params: Mapping[str, Any], arguments: Sequence[str]
) -> tuple[dict[str, ParamSpec], dict[str, str]]:
    """The YAML search space plus the command line -> (searched keys, fixed overrides).

    Command-line sweeps join (or replace) YAML entries; a plain command-line value fixes that
    key, removing it from the search space; a YAML entry set to null is not searched (a sweep
    config that narrows another one: ``conf/sweep/members.yaml``).
    """
    parser = OverridesParser.create()
    space: dict[str, ParamSpec] = {}
    for key, node in params.items():
        if node is None:
            continue
        if isinstance(node, Mapping):
            when = {k: tuple(v) for k, v in (node.get("when") or {}).items()}
            space[key] = ParamSpec(distribution_from_dict(key, node), when)
        else:
            (override,) = parser.parse_overrides([f"{key}={node}"])
            dist = distribution_from_override(override)
            if dist is None:
                raise ValueError(f"hydra.sweeper.params.{key}={node!r} is not a sweep")
            space[key] = ParamSpec(dist)
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        dist = distribution_from_override(override)
        if dist is None:
            space.pop(key.lstrip("+~"), None)
            fixed[key] = override.input_line
        else:
            space[key] = ParamSpec(dist)
    return space, fixed


# ----------------------------------------------------------------------------- one trial
def suggest(trial: Trial, space: Mapping[str, ParamSpec], known: Mapping[str, Any]) -> dict:
    """Sample the applicable keys of ``space`` in order (define-by-run, so a condition may
    depend on a key sampled before it); ``known`` gives values of keys outside the space."""
    chosen: dict[str, Any] = {}
    for key, spec in space.items():
        values = {**known, **chosen}
        if all(values.get(k) in allowed for k, allowed in spec.when.items()):
            chosen[key] = sample(trial, key, spec.distribution)
    return chosen


def sample(trial: Trial, key: str, dist: BaseDistribution) -> Any:
    """Ask the trial for one value of ``dist`` through Optuna's public suggest API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def trial_overrides(chosen: Mapping[str, Any], fixed: Mapping[str, str]) -> list[str]:
    return [*fixed.values(), *(f"{k}={format_value(v)}" for k, v in chosen.items())]


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


# ----------------------------------------------------------------------------- populations
def split_members(chosen: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's settings -> (grouping keys: they change the computation, so members must share
    them; per-member keys, by their ``model.members`` name)."""
    member_names = {key: name for name, key in MEMBER_KEYS.items()}
    shared_keys = {k: v for k, v in chosen.items() if k not in member_names}
    own = {member_names[k]: v for k, v in chosen.items() if k in member_names}
    return shared_keys, own


def group_trials(chosen: Sequence[Mapping[str, Any]], size: int) -> list[list[int]]:
    """Indices of ``chosen`` grouped by their grouping keys (and by which per-member keys they
    have, but for ``OPTIONAL_MEMBER_KEYS``: a member without one takes its own value), in order
    of first appearance, each group cut into populations of at most ``size``.
    A group larger than ``size`` is cut in order of sample count b: every member is padded to
    its population's largest b, so similar b share a population."""
    groups: dict[str, list[int]] = {}
    for index, settings in enumerate(chosen):
        shared_keys, own = split_members(settings)
        keys = sorted(k for k in own if k not in OPTIONAL_MEMBER_KEYS)
        signature = json.dumps([sorted(shared_keys.items(), key=str), keys], default=str)
        groups.setdefault(signature, []).append(index)
    populations = []
    for group in groups.values():
        if len(group) > size:
            group = sorted(group, key=lambda i: chosen[i].get(MEMBER_KEYS["samples"], 0))
        populations += [group[i : i + size] for i in range(0, len(group), size)]
    return populations


def format_list(values: Sequence[Any]) -> str:
    return "[" + ",".join(format_value(v) for v in values) + "]"


def population_overrides(members: Sequence[Mapping[str, Any]], seed: int) -> list[str]:
    """A group of trials' settings as one population job's overrides: the shared keys once,
    ``model.population=K`` and every per-member key as a list (``model.members``); every
    member keeps the sweep's seed, so member k is the trial as a solo job would run it."""
    shared_keys, _ = split_members(members[0])
    owns = [split_members(m)[1] for m in members]  # the group shares which keys they have
    given = {name for own in owns for name in own}  # an optional key: null where one lacks it
    lists = {name: [own.get(name) for own in owns] for name in MEMBER_KEYS if name in given}
    lists["seed"] = [seed] * len(members)
    body = ",".join(f"{name}:{format_list(values)}" for name, values in lists.items())
    return [
        *(f"{k}={format_value(v)}" for k, v in shared_keys.items()),
        f"model.population={len(members)}",
        f"model.members={{{body}}}",
    ]


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


class Progress:
    """One line per finished trial (number, value, status, best so far, trials per hour) and a
    summary at the end."""

    def __init__(self, study: optuna.Study, objective: str, n_trials: int) -> None:
        self.study, self.objective, self.n_trials = study, objective, n_trials
        self.start, self.done = time.monotonic(), 0
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.best: tuple[float, int] | None = None

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-9) * 3600

    def trial(self, trial: FrozenTrial) -> None:
        self.done += 1
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
            finished(self.study),
            self.n_trials,
            self.rate(),
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


# ----------------------------------------------------------------------------- the study
def finished(study: optuna.Study) -> int:
    """Trials that produced a result (diverged and pruned ones included): what ``n_trials``
    counts."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def fail_abandoned(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed sweep can never finish: mark them failed and ask their
    settings again (as a shared storage does for a dead worker's trials)."""
    retry = retry_failed()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning("trial %d was left running by an earlier sweep: marked failed", trial.number)
        failed = study.tell(trial.number, state=TrialState.FAIL)
        retry(study, failed)


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


def split_grid(
    arguments: Sequence[str], keys: Sequence[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """(the other arguments, one {key: override} per combination of the ``keys``' command-line
    values): ``depth=1,2 model.budget=100,300`` with grid [depth, model.budget] -> 4 studies."""
    if not keys:
        return list(arguments), [{}]
    parser = OverridesParser.create()
    values: dict[str, list[str]] = {}
    rest = []
    for text, override in zip(arguments, parser.parse_overrides(list(arguments)), strict=True):
        key = override.get_key_element()
        if key not in keys:
            rest.append(text)
        elif override.is_sweep_override():
            if not override.is_choice_sweep():
                raise ConfigError(f"{text}: a hydra.sweeper.grid key takes a list a,b,c")
            values[key] = [str(v) for v in override.sweep_string_iterator()]
        else:
            values[key] = [str(override.value())]
    missing = [k for k in keys if k not in values]
    if missing:
        raise ConfigError(
            f"hydra.sweeper.grid={list(keys)}: give {missing[0]}=a,b,... on the command line"
        )
    points = [{}]
    for key in keys:
        points = [{**p, key: f"{key}={v}"} for p in points for v in values[key]]
    return rest, points


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
                f"{self.storage} with direction {study.direction.name.lower()}; give another "
                "hydra.sweeper.study_name or the study's direction"
            )
        study.sampler = make_sampler(self.sampler, len(study.get_trials(deepcopy=False)))
        attrs = {"task": config.task.name, "cell": config.cell.name, "depth": config.depth}
        attrs |= {"objective": objective, "sampler": self.sampler.func.__name__}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        log.info("study %s (%s %s) in %s", name, direction, objective, self.storage)
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
        if not shared(self.storage):  # one process owns the study: nothing else is running
            fail_abandoned(study)
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
        storage = absolute_storage(self.storage, self.config.hydra.runtime.cwd)
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
                optuna.storages.fail_stale_trials(point.study)  # a dead worker's: re-asked
                todo = self.n_trials - finished(point.study)
                size = min(todo, per_study)
                trials = [point.study.ask() for _ in range(size)]
                asked.append((point, trials))
                for overrides, members in self.point_jobs(point, trials, storage):
                    batch.append(overrides)
                    owners.append((point, members))
            everyone = [t for _, trials in asked for t in trials]
            with heartbeat(rounds[0].study, everyone, self.heartbeat_interval):
                self.validate_batch(asked, batch)
                first = everyone[0].number
                jobs = self.launcher.launch(batch, initial_job_idx=first)
            errors = []
            for (point, members), job in zip(owners, jobs, strict=True):
                if (error := tell(point.study, members, job, point.objective)) is not None:
                    errors.append(error)
                for trial in members:
                    frozen = point.study._storage.get_trial(trial._trial_id)  # noqa: SLF001
                    point.progress.trial(frozen)
            failed += len(errors)
            # failed trials do not count as finished: never retry more than n_trials times
            if errors and (
                len(errors) / len(jobs) > self.max_failure_rate
                or failed >= self.n_trials * len(points)
            ):
                raise errors[0]
        for point in points:
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
