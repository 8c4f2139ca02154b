"""Structured configs of the sweeper (``hydra/sweeper: rnncap_optuna``) and its samplers
(``hydra/sweeper/sampler: gp | tpe | random``), stored in Hydra's ConfigStore.

No ``from __future__ import annotations`` here: Hydra executes plugin modules outside
``sys.modules``, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    _partial_: bool = True  # built by the sweeper, which offsets the seed when resuming
    # null = a fresh random stream per run; a seed gives reproducible proposals: a rerun that
    # resumes a study with k finished trials uses seed + k, so it never replays old proposals
    seed: int | None = None


@dataclass
class GPSamplerConfig(SamplerConfig):
    """optuna.samplers.GPSampler: Gaussian-process Bayesian optimisation (the paper's tuner)."""

    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10  # random trials before the GP proposes
    deterministic_objective: bool = False  # training is noisy across settings: keep a noise term


@dataclass
class TPESamplerConfig(SamplerConfig):
    """optuna.samplers.TPESampler: tree-structured Parzen estimator."""

    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    multivariate: bool = True  # model parameter interactions (lr x optimizer, ...)
    group: bool = True  # conditional parameters (momentum only for SGD/RMSProp)
    # running trials count as their worst so far: a round's K asks spread out (populations)
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """optuna.samplers.RandomSampler: the random-settings experiment (paper Table 1)."""

    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class RnncapOptunaSweeperConf:
    _target_: str = "hydra_plugins.rnncap_optuna.sweeper.RnncapOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "gp"}])

    sampler: SamplerConfig = MISSING
    # "minimize" | "maximize"; null = the task class's ``objective_direction``
    direction: str | None = None
    # the study storage (rnncap.core.storage): sqlite:///FILE (one process), journal:///FILE
    # (several processes on one machine), postgresql+psycopg://USER@HOST:PORT/DB (many
    # machines); a relative file is taken from the launch directory, so reruns find the same study
    storage: str | None = "sqlite:///results/tune/studies.db"
    # null = <task>-<cell>-d<depth>-<p<budget>|n<hidden>>[-s<seed>]-<sampler> (seed 0: no -s0)
    study_name: str | None = None
    # total number of finished trials the study must hold: a rerun adds only the missing ones
    n_trials: int = 20
    # jobs launched at once: with hydra/launcher=joblib, one process per job (one torch thread
    # each on CPU); with Hydra's basic launcher they run one after another
    n_jobs: int = 1
    # K > 1: trials are asked K per job, grouped by the settings that change the computation
    # (cell, depth, optimizer class, nonlinearity, recurrent init, clipping on/off, ...) and
    # each group trained as one population (model.population); the numeric settings of the
    # capacity space are per member (rnncap.core.population.MEMBER_KEYS). task=capacity only
    population: int = 1
    # stop unpromising trials (and population members) early from the objective they report
    # at every evaluation: null | median | hyperband | percentile | successive_halving
    # (Optuna's pruners); pruned trials are recorded as PRUNED
    pruner: str | None = None
    # the pruner's own arguments, e.g. {n_startup_trials: 5, n_warmup_steps: 1000}
    pruner_args: Any = None
    # keys whose command-line values a,b,c give one study each instead of a searched
    # dimension, e.g. [depth, model.budget] with depth=1,2 model.budget=100,300: 4 studies in
    # one sweep, their jobs launched together (a run dir per study: <sweep dir>/<study>/<n>)
    grid: list[str] = field(default_factory=list)
    # seconds after which no new round of trials starts (running ones finish); null = none.
    # A rerun resumes the study, so a budget can be spent in slices
    timeout: float | None = None
    # share of crashed (not diverged) trials per batch above which the sweep stops
    max_failure_rate: float = 0.0
    # the search space: key -> {type: float|int|categorical, low, high, log, step, choices,
    # when} or a Hydra sweep string ("tag(log, interval(1e-4, 1e-1))", "choice(a, b)", "a,b")
    params: dict[str, Any] = field(default_factory=dict)
    # PostgreSQL: seconds between a worker's heartbeats for its running trials, and the silence
    # after which another worker fails such a trial and asks its settings again
    heartbeat_interval: int = 10
    grace_period: int = 30


ConfigStore.instance().store(
    group="hydra/sweeper", name="rnncap_optuna", node=RnncapOptunaSweeperConf, provider="rnncap"
)
for _name, _node in [
    ("gp", GPSamplerConfig),
    ("tpe", TPESamplerConfig),
    ("random", RandomSamplerConfig),
]:
    ConfigStore.instance().store(
        group="hydra/sweeper/sampler", name=_name, node=_node, provider="rnncap"
    )
