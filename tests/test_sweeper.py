"""The Optuna sweeper plugin: discovery, search-space parsing, result recording, and real
sweeps through the command line (resume to a larger n_trials, a forced divergence)."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FixedTrial, TrialState

from hydra_plugins.rnncap_optuna import _populations as sweep_populations
from hydra_plugins.rnncap_optuna import _progress as sweep_progress
from hydra_plugins.rnncap_optuna import _space as sweep_space
from hydra_plugins.rnncap_optuna import _study as sweep_study
from hydra_plugins.rnncap_optuna import _trials as sweep_trials
from hydra_plugins.rnncap_optuna.sweeper import RnncapOptunaSweeper
from rnncap.base.errors import ConfigError
from rnncap.core import storage


def test_plugin_is_discovered_in_the_namespace_package():
    import hydra_plugins

    assert not hasattr(hydra_plugins, "__file__") or hydra_plugins.__file__ is None  # namespace
    # Hydra loads plugin modules itself (its own class objects): compare by qualified name
    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert f"{RnncapOptunaSweeper.__module__}.RnncapOptunaSweeper" in found


def hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_sweep_group_selects_sampler_and_space_and_default_stays_basic():
    assert hydra_cfg().hydra.sweeper._target_.endswith("BasicSweeper")
    gp = hydra_cfg("sweep=gp", "cell=gru").hydra.sweeper
    assert gp._target_.endswith("RnncapOptunaSweeper")
    assert gp.sampler._target_ == "optuna.samplers.GPSampler"
    assert {"optimizer.lr", "cell.gate_bias", "task.samples"} <= set(gp.params)
    rnn = hydra_cfg("sweep=random", "cell=rnn").hydra.sweeper
    assert rnn.sampler._target_ == "optuna.samplers.RandomSampler"
    assert "cell.gate_bias" not in rnn.params  # the RNN has no gate
    assert "cell.nonlinearity" not in hydra_cfg("sweep=tpe", "cell=irnn").hydra.sweeper.params


@pytest.mark.parametrize("cell", ["rnn", "irnn", "gru", "intersection"])
def test_members_space_searches_only_per_member_keys_so_a_round_is_one_population(cell):
    """sweep=members: the gp space less the keys that change the computation (optimiser,
    nonlinearity, recurrent init): every asked trial of a study falls in one group."""
    from rnncap.core.population import MEMBER_KEYS

    node = hydra_cfg("sweep=members", f"cell={cell}", "task=parentheses").hydra.sweeper
    assert node.sampler._target_ == "optuna.samplers.GPSampler"
    space, _ = sweep_space.parse_search_space(OmegaConf.to_container(node.params, resolve=True), [])
    assert space and set(space) <= set(MEMBER_KEYS.values())
    assert ("cell.gate_bias" in space) == (cell != "rnn" and cell != "irnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    chosen = [sweep_space.suggest(study.ask(), space, {"optimizer": "sgd"}) for _ in range(12)]
    assert sweep_populations.group_trials(chosen, 12) == [list(range(12))]
    tpe = hydra_cfg("sweep=members", "hydra/sweeper/sampler=tpe").hydra.sweeper.sampler
    assert tpe._target_ == "optuna.samplers.TPESampler" and tpe.constant_liar


def test_capacity_space_scales_b_with_the_budget_and_tunes_steps_and_clipping():
    params = hydra_cfg("sweep=gp", "task=capacity", "model.budget=800").hydra.sweeper.params
    space, _ = sweep_space.parse_search_space(OmegaConf.to_container(params, resolve=True), [])
    # b from 3 to 10 samples per budgeted parameter; the default budget when only a width is set
    assert space["task.samples"].distribution == IntDistribution(2400, 8000, log=True)
    hidden = hydra_cfg("sweep=gp", "task=capacity", "model.hidden=8").hydra.sweeper.params
    assert OmegaConf.to_container(hidden, resolve=True)["task.samples"]["low"] == 1500
    assert space["trainer.max_steps"].distribution == IntDistribution(1000, 10000, log=True)
    clip = space["trainer.gradient_clip_val"].distribution
    assert None in clip.choices and 0.1 in clip.choices  # no clipping is a choice
    # the chosen "no clipping" reaches the run config as null
    trial = FixedTrial({"trainer.gradient_clip_val": None})
    only_clip = {"trainer.gradient_clip_val": space["trainer.gradient_clip_val"]}
    (override,) = sweep_space.trial_overrides(sweep_space.suggest(trial, only_clip, {}), {})
    assert override == "trainer.gradient_clip_val=null"
    assert hydra_cfg(override).trainer.gradient_clip_val is None
    # other tasks keep the shared space: SGD and rates up to 1 (random settings can diverge)
    paren = hydra_cfg("sweep=random", "task=parentheses").hydra.sweeper.params
    assert "sgd" in paren.optimizer.choices and paren["optimizer.lr"].high == 1.0
    assert "task.samples" not in paren and "trainer.max_steps" not in paren


@pytest.mark.parametrize(
    ("value", "factor", "expected"), [(500, 2, 1000), (333, 3, 999), (None, 10, 5000)]
)
def test_scaled_resolver_by_hand(value, factor, expected):
    from rnncap.core.resolvers import scaled

    assert scaled(value, factor, 500) == expected


@pytest.mark.parametrize(
    ("steps", "fraction", "gamma"), [(1, 0.5, 0.5), (2, 0.25, 0.5), (3, 8e-3, 0.2)]
)
def test_decay_to_resolver_by_hand(steps, fraction, gamma):
    """gamma^steps = fraction: 0.5^2 = 0.25, 0.2^3 = 0.008."""
    from rnncap.core.resolvers import decay_to

    assert decay_to(steps, fraction) == pytest.approx(gamma)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            FloatDistribution(1e-4, 1, log=True),
        ),
        ({"type": "float", "low": 0, "high": 1, "step": 0.25}, FloatDistribution(0, 1, step=0.25)),
        ({"type": "int", "low": 8, "high": 64, "log": True}, IntDistribution(8, 64, log=True)),
        ({"type": "int", "low": 1, "high": 9, "step": 2}, IntDistribution(1, 9, step=2)),
        ({"type": "categorical", "choices": ["a", "b"]}, CategoricalDistribution(["a", "b"])),
    ],
)
def test_distribution_from_dict(node, expected):
    assert sweep_space.distribution_from_dict("k", node) == expected


@pytest.mark.parametrize(
    "node", [{"type": "uniform", "low": 0, "high": 1}, {"type": "float", "low": 0}]
)
def test_bad_distribution_names_the_key(node):
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.params\.k"):
        sweep_space.distribution_from_dict("k", node)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=1,2,3", CategoricalDistribution([1, 2, 3])),
        ("x=choice(adam,sgd)", CategoricalDistribution(["adam", "sgd"])),
        ("x=range(1,5)", IntDistribution(1, 4)),
        ("x=range(0.0,1.0,0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
        ("x=interval(0.5,2.0)", FloatDistribution(0.5, 2.0)),
        ("x=tag(log,interval(1e-4,1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("x=tag(log,int(interval(16,4096)))", IntDistribution(16, 4096, log=True)),
        ("x=interval(1,5)", FloatDistribution(1.0, 5.0)),  # Hydra intervals are float
        ("x=0.5", None),
    ],
)
def test_distribution_from_override(text, expected):
    (override,) = OverridesParser.create().parse_overrides([text])
    assert sweep_space.distribution_from_override(override) == expected


def test_command_line_fixes_or_replaces_yaml_keys():
    params = {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "cell.bias_init": "interval(-1.0,1.0)",
        "optimizer.momentum": {
            "type": "float",
            "low": 0,
            "high": 0.9,
            "when": {"optimizer": ["sgd"]},
        },
    }
    arguments = ["optimizer.lr=0.01", "depth=1,2", "cell=gru"]
    space, fixed = sweep_space.parse_search_space(params, arguments)
    assert list(space) == ["cell.bias_init", "optimizer.momentum", "depth"]
    assert space["depth"].distribution == CategoricalDistribution([1, 2])
    assert space["cell.bias_init"].distribution == FloatDistribution(-1.0, 1.0)
    assert space["optimizer.momentum"].when == {"optimizer": ("sgd",)}
    assert fixed == {"optimizer.lr": "optimizer.lr=0.01", "cell": "cell=gru"}


def test_conditional_key_is_sampled_only_when_its_condition_holds():
    space, _ = sweep_space.parse_search_space(
        {
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "optimizer.momentum": {
                "type": "float",
                "low": 0.0,
                "high": 0.9,
                "when": {"optimizer": ["sgd"]},
            },
        },
        [],
    )
    sgd_trial = FixedTrial({"optimizer": "sgd", "optimizer.momentum": 0.5})
    sgd = sweep_space.suggest(sgd_trial, space, {})
    adam = sweep_space.suggest(FixedTrial({"optimizer": "adam"}), space, {})
    assert sgd == {"optimizer": "sgd", "optimizer.momentum": 0.5}
    assert adam == {"optimizer": "adam"}
    # a key outside the space decides through `known` (the config's group choice)
    only_momentum = {"optimizer.momentum": space["optimizer.momentum"]}
    assert sweep_space.suggest(FixedTrial({}), only_momentum, {"optimizer": "adam"}) == {}


def test_trial_overrides_text():
    chosen = {"optimizer.lr": 1e-05, "optimizer": "sgd", "x": None, "y": True, "task.samples": 300}
    assert sweep_space.trial_overrides(chosen, {"cell": "cell=gru"}) == [
        "cell=gru",
        "optimizer.lr=1e-05",
        "optimizer=sgd",
        "x=null",
        "y=true",
        "task.samples=300",
    ]


def job(tmp_path: Path, value, status: JobStatus = JobStatus.COMPLETED, metrics: str | None = None):
    if metrics is not None:
        (tmp_path / "metrics.json").write_text(metrics)
    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    ret = JobReturn(working_dir="/elsewhere", hydra_cfg=hydra_cfg, status=status)
    ret.return_value = value
    return ret


def stored_constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    """The trial's ``constraints`` system attribute: what Optuna 4's and 5's samplers read."""
    return list(trial.system_attrs.get("constraints") or [])


@pytest.mark.parametrize(("name", "constrained"), [("gp", True), ("tpe", True), ("random", False)])
def test_configured_samplers_record_the_divergence_constraint(name, constrained):
    factory = instantiate(hydra_cfg(f"sweep={name}").hydra.sweeper.sampler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = sweep_study.make_sampler(factory, done=0)
    # no FutureWarning (constraints_func, warn_independent_sampling) or any other warning
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for status, value in [("ok", 1.0), ("diverged", -math.inf)]:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("status", status)
        study.tell(trial, value)
    expected = [[0.0], [1.0]] if constrained else [[], []]
    assert [stored_constraints(t) for t in study.get_trials()] == expected


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_tell_records_ok_diverged_and_crashed_trials(tmp_path, direction):
    tpe = sweep_study.make_sampler(functools.partial(optuna.samplers.TPESampler), done=0)
    study = optuna.create_study(direction=direction, sampler=tpe)
    trials = [study.ask() for _ in range(4)]
    ok_dir, div_dir, inf_dir = (tmp_path / n for n in "abc")
    for d in (ok_dir, div_dir, inf_dir):
        d.mkdir()
    assert (
        sweep_trials.tell(
            study, [trials[0]], job(ok_dir, 12.5, metrics='{"status": "ok", "bits": 12.5}'), "bits"
        )
        is None
    )
    assert (
        sweep_trials.tell(
            study,
            [trials[1]],
            job(div_dir, None, metrics='{"status": "diverged", "bits": null}'),
            "bits",
        )
        is None
    )
    assert sweep_trials.tell(study, [trials[2]], job(inf_dir, math.nan), "bits") is None
    crash = sweep_trials.tell(
        study, [trials[3]], job(tmp_path, RuntimeError("boom"), JobStatus.FAILED), "bits"
    )
    assert isinstance(crash, RuntimeError)

    t = study.get_trials()
    worst = -math.inf if direction == "maximize" else math.inf
    assert [x.state for x in t] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert [x.user_attrs.get("status") for x in t] == ["ok", "diverged", "diverged", None]
    assert t[0].value == 12.5 and t[1].value == worst and t[2].value == worst
    assert t[0].user_attrs["run_dir"] == str(ok_dir)
    assert t[0].user_attrs["metrics.bits"] == 12.5 and t[1].user_attrs["metrics.bits"] is None
    assert [stored_constraints(x) for x in t] == [[0.0], [1.0], [1.0], []]
    assert study.best_trial.number == 0  # infeasible trials never win
    assert sweep_progress.finished(study) == 3


def test_population_job_tells_each_member_its_own_result(tmp_path):
    """A population's metrics.json rows -> one trial each: ok, pruned (its last reported value
    kept by Optuna), diverged (infeasible); a crashed population fails all its trials."""
    study = optuna.create_study(direction="maximize")
    trials = [study.ask() for _ in range(5)]
    trials[1].report(7.0, 100)
    rows = [
        {"status": "ok", "bits": 30.0, "lr": 0.01},
        {"status": "pruned", "bits": 7.0, "lr": 0.02},
        {"status": "diverged", "bits": None, "lr": 1.0},
    ]
    metrics = json.dumps({"status": "ok", "bits": 30.0, "members": rows})
    population = job(tmp_path, 30.0, metrics=metrics)
    assert sweep_trials.tell(study, trials[:3], population, "bits") is None
    crash = job(tmp_path, RuntimeError("boom"), JobStatus.FAILED)
    assert isinstance(sweep_trials.tell(study, trials[3:], crash, "bits"), RuntimeError)
    t = study.get_trials()
    assert [x.state for x in t] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    assert [x.user_attrs.get("status") for x in t[:3]] == ["ok", "pruned", "diverged"]
    assert t[0].value == 30.0 and t[1].value == 7.0 and t[2].value == -math.inf
    assert t[1].user_attrs["metrics.lr"] == 0.02 and "metrics.members" not in t[0].user_attrs
    # pruned trials count as finished, failed ones do not
    assert sweep_progress.finished(study) == 3


def test_trials_are_grouped_by_the_settings_that_change_the_computation():
    chosen = [
        {"depth": 1, "optimizer": "adam", "optimizer.lr": 0.1, "task.samples": 10},
        {"depth": 2, "optimizer": "rmsprop", "optimizer.lr": 0.2, "optimizer.momentum": 0.5},
        {"depth": 1, "optimizer": "adam", "optimizer.lr": 0.3, "task.samples": 30},
        {"depth": 1, "optimizer": "adam", "optimizer.lr": 0.4, "task.samples": 40},
        {"depth": 2, "optimizer": "rmsprop", "optimizer.lr": 0.5, "optimizer.momentum": 0.1},
    ]
    assert sweep_populations.group_trials(chosen, 2) == [[0, 2], [3], [1, 4]]
    # a group cut into populations by b: each member is padded to its population's largest b
    by_b = [{"optimizer.lr": 0.1, "task.samples": b} for b in (900, 100, 500, 120)]
    assert sweep_populations.group_trials(by_b, 2) == [[1, 3], [2, 0]]
    overrides = sweep_populations.population_overrides([chosen[1], chosen[4]], seed=3)
    assert overrides == [
        "depth=2",
        "model.population=2",
        "model.members={optimizer:[rmsprop,rmsprop],lr:[0.2,0.5],momentum:[0.5,0.1],seed:[3,3]}",
    ]


def test_categorical_keys_do_not_split_a_population():
    """The optimiser class, nonlinearity, recurrent init and clipping are per-member keys, and
    a conditional key (momentum: SGD and RMSprop only) is null where a trial lacks it."""
    chosen = [
        {"optimizer": "adam", "optimizer.lr": 0.1, "cell.nonlinearity": "tanh"},
        {"optimizer": "sgd", "optimizer.lr": 0.2, "optimizer.momentum": 0.5},
        {"optimizer": "rmsprop", "optimizer.lr": 0.3, "optimizer.momentum": 0.1},
    ]
    for trial, init, clip in zip(
        chosen, ["identity", "xavier", "orthogonal"], [None, 1.0, 0.1], strict=True
    ):
        trial |= {"cell.nonlinearity": "relu", "cell.recurrent_init": init}
        trial["trainer.gradient_clip_val"] = clip
    assert sweep_populations.group_trials(chosen, 8) == [[0, 1, 2]]
    overrides = sweep_populations.population_overrides(chosen, seed=0)
    assert "momentum:[null,0.5,0.1]" in overrides[-1]
    assert "optimizer:[adam,sgd,rmsprop]" in overrides[-1]
    assert "recurrent_init:[identity,xavier,orthogonal]" in overrides[-1]


def test_none_without_divergence_is_a_failure(tmp_path):
    study = optuna.create_study()
    trial = study.ask()
    err = sweep_trials.tell(study, [trial], job(tmp_path, None, metrics='{"status": "ok"}'), "bits")
    assert isinstance(err, ValueError) and study.get_trials()[0].state == TrialState.FAIL


def test_storage_url_is_anchored_at_the_launch_directory(tmp_path):
    url = storage.storage_url("sqlite:///results/tune/s.db", str(tmp_path))
    assert url == f"sqlite:///{tmp_path}/results/tune/s.db" and (tmp_path / "results/tune").is_dir()
    assert storage.storage_url("sqlite:////abs/x.db", str(tmp_path)) == "sqlite:////abs/x.db"
    assert storage.storage_url(None, str(tmp_path)) is None


TINY = [
    "model.hidden=4",
    "task.samples=24",
    "task.input_dim=6",
    "task.steps=3",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.checkpoint_every=null",
]


def sweep(tmp_path: Path, n_trials: int, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=tpe", *TINY, *overrides]
    cmd += [f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.sampler.seed=3"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_sweep_resumes_and_records_forced_divergence_as_infeasible(tmp_path):
    # one learning rate always diverges (unclipped SGD on a ReLU IRNN: the activations overflow;
    # Adam/RMSProp at 1e30 can stay finite); the sweep must finish regardless
    lrs = ["cell=irnn", "optimizer=sgd", "trainer.gradient_clip_val=null"]
    lrs.append("optimizer.lr=choice(0.001,1e30)")
    first = sweep(tmp_path, 3, *lrs, "hydra.sweep.dir=sweep1")
    assert first.returncode == 0, first.stderr[-2000:]
    second = sweep(tmp_path, 5, *lrs, "hydra.sweep.dir=sweep2")
    assert second.returncode == 0, second.stderr[-2000:]

    storage = f"sqlite:///{tmp_path}/results/tune/studies.db"
    (summary,) = optuna.get_all_study_summaries(storage)  # the rerun resumed the same study
    assert summary.study_name == "capacity-irnn-d1-n4-tpe"
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(p.name for p in (tmp_path / "sweep2").iterdir() if p.is_dir()) == ["3", "4"]
    lr = [t.params["optimizer.lr"] for t in trials]
    assert 1e30 in lr and 0.001 in lr  # the seed gives both cases
    for t in trials:
        diverged = t.user_attrs["status"] == "diverged"
        assert diverged == (t.value == -math.inf) == (stored_constraints(t) == [1.0])
        if t.params["optimizer.lr"] == 1e30:
            assert diverged and t.user_attrs["metrics.bits"] is None
    attrs = study.user_attrs
    assert {k: v for k, v in attrs.items() if k != "settings"} == {
        "task": "capacity",
        "cell": "irnn",
        "depth": 1,
        "objective": "bits",
        "sampler": "TPESampler",
    }
    assert attrs["settings"]["trainer.max_steps"] == 6 and "optimizer.lr" not in attrs["settings"]
    results = (tmp_path / "sweep2" / "optimization_results.yaml").read_text()
    n_diverged = sum(t.user_attrs["status"] == "diverged" for t in trials)
    assert "trials: 5" in results and f"diverged: {n_diverged}" in results
    # the seeded sampler resumed with an offset seed: no replay of the first proposals
    assert trials[3].params != trials[0].params and trials[4].params != trials[1].params

    # the same command with another fixed setting: refused, not resumed with the old trials
    longer = sweep(tmp_path, 6, *lrs, "trainer.max_steps=9", "hydra.sweep.dir=sweep3")
    assert longer.returncode == 2, longer.stderr[-2000:]
    (line,) = longer.stderr.strip().splitlines()
    assert line.startswith("error: trainer.max_steps=9: study 'capacity-irnn-d1-n4-tpe' in ")
    assert "was run with trainer.max_steps=6" in line and "hydra.sweeper.study_name" in line
    assert len(study.get_trials()) == 5 and not (tmp_path / "sweep3").exists()


def test_fixed_settings_leave_out_searched_keys_and_what_changes_no_result():
    params = {"optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}
    config = hydra_cfg("task=capacity", "trainer.max_steps=50", "logger=csv")
    settings = sweep_study.fixed_settings(config, list(params))
    assert settings["trainer.max_steps"] == 50 and settings["task.name"] == "capacity"
    assert settings["hardware.precision"] == "32-true"  # numbers change with the precision
    assert not [k for k in settings if k.split(".")[0] in ("optimizer", "logger", "trial")]
    assert "output_dir" not in settings and "trainer.checkpoint_every" not in settings

    study = optuna.create_study()
    sweep_study.check_settings(study, settings, "sqlite:///s.db")  # recorded
    sweep_study.check_settings(study, settings | {"new.key": 1}, "x")  # a key added since
    assert study.user_attrs["settings"]["new.key"] == 1
    sweep_study.check_settings(study, {"trainer.max_steps": 50}, "x")  # a key removed since
    with pytest.raises(ConfigError) as err:
        sweep_study.check_settings(study, settings | {"trainer.max_steps": 300}, "sqlite:///s.db")
    assert str(err.value).startswith("trainer.max_steps=300: study ")
    assert "in sqlite:///s.db was run with trainer.max_steps=50" in str(err.value)


def test_default_study_name_gives_every_seed_its_own_study():
    random = instantiate(hydra_cfg("sweep=random").hydra.sweeper.sampler)
    name = functools.partial(sweep_study.default_study_name, factory=random)
    assert name(hydra_cfg("sweep=random")) == "capacity-rnn-d1-p500-random"
    assert name(hydra_cfg("sweep=random", "seed=1", "cell=gru", "depth=2", "model.hidden=8")) == (
        "capacity-gru-d2-n8-s1-random"
    )


@pytest.mark.parametrize(
    ("task", "expected"),
    [("capacity", ("bits", "maximize")), ("parentheses", ("loss", "minimize"))],
)
def test_direction_comes_from_the_task_class(task, expected):
    assert sweep_study.task_direction(hydra_cfg(f"task={task}")) == expected


def check_pruned_sweep(tmp_path: Path, out: subprocess.CompletedProcess) -> None:
    """Ten finished trials of which some pruned: every trial reported its objective at each
    evaluation; pruned trials are PRUNED with status pruned and count as finished; one
    progress line per trial and a summary."""
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(
        study_name="capacity-rnn-d1-n4-tpe", storage=f"sqlite:///{tmp_path}/results/tune/studies.db"
    )
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(10))
    states = [t.state for t in trials]
    assert set(states) == {TrialState.COMPLETE, TrialState.PRUNED}, states
    for t in trials:
        steps_seen = sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert steps_seen == [10, 20, 30] and t.user_attrs["status"] == "ok"
            assert t.value == t.intermediate_values[30]  # the final objective, as reported
        else:
            assert steps_seen[-1] < 30 and t.user_attrs["status"] == "pruned"
            assert t.value == t.intermediate_values[steps_seen[-1]]
    log = out.stdout + out.stderr
    assert sum(f"trial {n}: bits=" in log for n in range(10)) == 10
    noise = re.compile(r"(Future|Deprecation|Experimental)Warning|deprecated|sampled independently")
    assert not [line for line in log.splitlines() if noise.search(line)]
    pruned = states.count(TrialState.PRUNED)
    assert f"{10 - pruned} complete (0 diverged), {pruned} pruned, 0 failed" in log
    results = OmegaConf.load(tmp_path / "s" / "optimization_results.yaml")
    assert results.trials == 10 and results.pruned == pruned


PRUNING = ["hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args={n_startup_trials:2}"]
EVALUATIONS = ["trainer.max_steps=30", "trainer.val_check_interval=10", "optimizer.lr=0.01"]


def test_sweep_reports_every_evaluation_and_prunes(tmp_path):
    check_pruned_sweep(tmp_path, sweep(tmp_path, 10, *EVALUATIONS, *PRUNING, "hydra.sweep.dir=s"))


@pytest.mark.slow  # worker processes import torch and Lightning: about a minute
def test_parallel_sweep_in_worker_processes_reports_and_prunes(tmp_path):
    parallel = ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweep.dir=s"]
    check_pruned_sweep(tmp_path, sweep(tmp_path, 10, *EVALUATIONS, *PRUNING, *parallel))


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("hydra.sweeper.population=0", "hydra.sweeper.population=0 is out of range: must be >= 1"),
        ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 is out of range: must be >= 1"),
        ("hydra.sweeper.pruner=early", "hydra.sweeper.pruner='early' is unknown; choose one of"),
        ("hydra.sweeper.pruner_args={n_startup:1}", "hydra.sweeper.pruner_args={'n_startup': 1}"),
    ],
)
def test_bad_sweeper_settings_are_one_line_before_any_trial(override, says):
    node = hydra_cfg("sweep=tpe", "hydra.sweeper.pruner=median", override).hydra.sweeper
    with pytest.raises(InstantiationException) as err:
        instantiate(node)
    cause = err.value.__cause__  # the command line prints it alone (rnncap.core.command_line)
    assert isinstance(cause, ConfigError) and says in str(cause) and "\n" not in str(cause)


@pytest.mark.slow  # 12 parentheses trials in 3 studies as 3 populations, about 40 s
def test_grid_of_parentheses_studies_trains_each_round_as_one_population(tmp_path):
    """The trainability grid's shape (params.yaml `tune`): sweep=members over cells and
    optimisers, a minibatch task, each study's round one population job whose members' rows
    are told to their own trials."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=members", "task=parentheses"]
    cmd += ["hydra/sweeper/sampler=random", "cell=rnn,gru", "depth=1", "optimizer=adam,sgd"]
    cmd += ["hydra.sweeper.grid=[cell,depth,optimizer]", "hydra.sweeper.study_name=random"]
    cmd += ["hydra.sweeper.population=4", "hydra.sweeper.n_trials=4", "model.hidden=4"]
    cmd += ["task.streams=2", "task.noise_symbols=1", "task.steps=4", "task.samples=32"]
    cmd += ["task.eval_samples=16", "task.batch_size=8", "trainer.max_steps=6"]
    cmd += ["trainer.val_check_interval=3", "trainer.checkpoint_every=null", "hydra.sweep.dir=g"]
    cmd += ["hydra.sweeper.storage=journal:///results/tune/studies.log", "seed=2"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "results/tune/studies.log"))
    storage = optuna.storages.JournalStorage(backend)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == [
        f"random-cell{c}-depth1-optimizer{o}" for c in ("gru", "rnn") for o in ("adam", "sgd")
    ]
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials()
        assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
        # one population job per study: every trial's run is the job of trial 0
        (run,) = {t.user_attrs["run_dir"] for t in trials}
        assert Path(run).parts[-3:] == ("g", name, "0")
        assert all(t.user_attrs["metrics.loss"] == t.value for t in trials)
        metrics = json.loads((tmp_path / "g" / name / "0" / "metrics.json").read_text())
        assert metrics["population"] == 4 and metrics["task"] == "parentheses"


@pytest.mark.slow  # 8 trials in 4 studies, about 30 s; split_grid is tested by default
def test_grid_sweep_runs_one_study_per_combination(tmp_path):
    """hydra.sweeper.grid=[cell,depth] with cell=rnn,gru depth=1,2: four studies in one
    sweep, each resumed to n_trials, each trial's run in <sweep dir>/<study>/<number>."""
    grid = ["cell=rnn,gru", "depth=1,2", "hydra.sweeper.grid=[cell,depth]", "hydra.sweep.dir=g"]
    out = sweep(tmp_path, 2, *grid)
    assert out.returncode == 0, out.stderr[-3000:]
    storage = f"sqlite:///{tmp_path}/results/tune/studies.db"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == [f"capacity-{c}-d{d}-n4-tpe" for c in ("gru", "rnn") for d in (1, 2)]
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
        cell, depth = name.split("-")[1], int(name.split("-")[2][1:])
        assert study.user_attrs["cell"] == cell and study.user_attrs["depth"] == depth
        for t in study.get_trials():
            assert Path(t.user_attrs["run_dir"]) == tmp_path / "g" / name / str(t.number)
            metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
            assert (metrics["cell"], metrics["depth"]) == (cell, depth)
    results = OmegaConf.load(tmp_path / "g" / "optimization_results.yaml")
    assert sorted(r.study for r in results) == names


def test_grid_key_missing_on_the_command_line_is_one_line():
    with pytest.raises(ConfigError) as err:
        sweep_space.split_grid(["cell=rnn,gru"], ["cell", "depth"])
    assert str(err.value) == (
        "hydra.sweeper.grid=['cell', 'depth']: give depth=a,b,... on the command line"
    )
    rest, points = sweep_space.split_grid(["cell=rnn,gru", "depth=2", "seed=1"], ["cell", "depth"])
    assert rest == ["seed=1"]
    assert points == [
        {"cell": "cell=rnn", "depth": "depth=2"},
        {"cell": "cell=gru", "depth": "depth=2"},
    ]


MEMBER_SPACE = [  # the categorical keys fixed, so all trials share one computation
    "optimizer=adam",
    "cell.nonlinearity=tanh",
    "cell.recurrent_init=orthogonal",
    "task.samples=int(interval(12, 32))",
    "trainer.max_steps=int(interval(6, 12))",
]


def test_population_sweep_trains_each_round_as_one_job_and_tells_every_member(tmp_path):
    pop = ["hydra.sweeper.population=4", "hydra.sweep.dir=p"]
    out = sweep(tmp_path, 4, *MEMBER_SPACE, *pop)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(
        study_name="capacity-rnn-d1-n4-tpe", storage=f"sqlite:///{tmp_path}/results/tune/studies.db"
    )
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {t.user_attrs["run_dir"] for t in trials} == {str(tmp_path / "p" / "0")}  # one job
    metrics = json.loads((tmp_path / "p" / "0" / "metrics.json").read_text())
    assert metrics["population"] == 4
    for trial, row in zip(trials, metrics["members"], strict=True):
        assert row["lr"] == trial.params["optimizer.lr"]
        assert row["samples"] == trial.params["task.samples"]
        assert row["max_steps"] == trial.params["trainer.max_steps"]
        assert trial.value == row["bits"] and trial.user_attrs["metrics.bits"] == row["bits"]
        assert sorted(trial.intermediate_values)[-1] <= row["max_steps"]


@pytest.mark.slow  # about a minute on 2 cores
def test_killed_population_sweep_resumes_keeping_finished_members_once(tmp_path):
    """kill -9 of a population sweep mid-job, then the same command: the study resumes to
    n_trials; the finished members are kept once, the running ones are failed and their
    settings asked again."""
    args = [*MEMBER_SPACE, "trainer.max_steps=int(interval(300, 400))"]
    args.append("trainer.val_check_interval=100")
    args += ["hydra.sweeper.population=4", "hydra.sweep.dir=k"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=tpe", *TINY, *args]
    cmd += ["hydra.sweeper.n_trials=12", "hydra.sweeper.sampler.seed=3"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    storage = f"sqlite:///{tmp_path}/results/tune/studies.db"
    name = "capacity-rnn-d1-n4-tpe"
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while True:  # wait for the first population to finish and the second to be running
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
        try:
            states = [t.state for t in optuna.load_study(study_name=name, storage=storage).trials]
        except (KeyError, ValueError, sqlalchemy.exc.OperationalError):
            continue
        second_job = tmp_path / "k" / "4"  # started: its 4 trials have all their settings
        if states.count(TrialState.COMPLETE) == 4 and second_job.is_dir():
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t.value for t in optuna.load_study(study_name=name, storage=storage).trials
              if t.state == TrialState.COMPLETE}  # fmt: skip
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    trials = optuna.load_study(study_name=name, storage=storage).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(done) == 12 and len(failed) == 4
    assert before == {t.number: t.value for t in done[:4]}  # kept, once
    for killed in failed:
        again = [t for t in done if t.system_attrs.get("failed_trial") == killed.number]
        assert len(again) == 1 and again[0].params == killed.params


@pytest.mark.parametrize("name", ["gp", "tpe", "random"])
def test_sampled_floats_are_short_and_recorded_as_the_job_trains_them(name):
    startup = [] if name == "random" else ["hydra.sweeper.sampler.n_startup_trials=2"]
    config = hydra_cfg(f"sweep={name}", "cell=gru", *startup)
    factory = instantiate(config.hydra.sweeper.sampler)
    sampler = sweep_study.make_sampler(factory, done=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    space, _ = sweep_space.parse_search_space(
        OmegaConf.to_container(config.hydra.sweeper.params, resolve=True), []
    )
    parser = OverridesParser.create()
    for k in range(5):  # 2 start-up trials, then the model's (relative) proposals
        trial = study.ask()
        overrides = sweep_space.trial_overrides(sweep_space.suggest(trial, space, {}), {})
        assert len(" ".join(overrides)) < 400
        for override in parser.parse_overrides(overrides):
            key, value = override.get_key_element(), override.value()
            assert value == trial.params[key]  # the job trains what Optuna records
            if isinstance(value, float):
                text = override.input_line.split("=", 1)[1]
                digits = text.split("e")[0].replace("-", "").replace(".", "").strip("0")
                assert len(digits) <= 6, text
        study.tell(trial, float(k))
    floats = [v for t in study.trials for v in t.params.values() if isinstance(v, float)]
    assert floats and all(float(f"{v:.6g}") == v for v in floats)


def test_float_text_reads_back_as_the_value():
    from hydra_plugins.rnncap_optuna._rounding import format_float, round_float

    dist = FloatDistribution(1e-4, 1.0, log=True)
    assert round_float(0.0024069924842789765, dist) == 0.00240699
    assert format_float(0.00240699) == "0.00240699" and format_float(1.0) == "1.0"
    assert format_float(1.3317624693970452e-06) == "1.3317624693970452e-06"  # not rounded
    assert round_float(1.00000001e-4, FloatDistribution(1.00000001e-4, 1.0)) == 1.00000001e-4
    assert round_float(0.123456789, FloatDistribution(0.0, 1.0, step=None)) == 0.123457


def test_trials_per_hour_is_the_same_for_every_trial_of_a_round(caplog):
    study = optuna.create_study(direction="maximize")
    for value in (1.0, 3.0, 2.0):
        trial = study.ask()
        trial.set_user_attr("status", "ok")
        study.tell(trial, value)
    progress = sweep_progress.Progress(study, "bits", n_trials=6)
    caplog.set_level("INFO")
    progress.round(study.get_trials())
    lines = [r.getMessage() for r in caplog.records if "trials/h" in r.getMessage()]
    assert len(lines) == 3
    rates = {line.rsplit("| ", 1)[1] for line in lines}
    assert len(rates) == 1  # not climbing from the first trial of the round to its last
    assert all("| 3 of 6 finished |" in line for line in lines)
    assert "best 3 (trial 1)" in lines[-1] and progress.done == 3
