"""The trainability report on a synthetic study storage, checked against hand-computed values."""

from __future__ import annotations

import csv
import json
import math

import optuna
import pytest
from conftest import CONF, ROOT
from optuna.trial import TrialState, create_trial

from rnncap.analysis import trainability as tr
from rnncap.cli import main

INF = math.inf


def test_tuner_curves_minimise_by_hand():
    values = [3.0, INF, 1.0, 5.0, 2.0]
    feasible = [True, False, True, True, True]
    medians, bests = tr.tuner_curves(values, feasible, maximize=False)
    # feasible so far: [3], [3], [3,1], [3,1,5], [3,1,5,2]
    assert medians == [3.0, 3.0, 2.0, 3.0, 2.5]
    assert bests == [3.0, 3.0, 1.0, 1.0, 1.0]


def test_tuner_curves_maximise_and_leading_infeasible():
    medians, bests = tr.tuner_curves([-INF, 2.0, 4.0], [False, True, True], maximize=True)
    assert math.isnan(medians[0]) and math.isnan(bests[0])
    assert medians[1:] == [2.0, 3.0] and bests[1:] == [2.0, 4.0]


def test_study_runs_by_hand():
    # maximised; trial 1 diverged, trial 3 pruned at 4.0 (feasible, on the curves)
    study = tr.StudyTrials(
        name="gp-gru-d8", cell="gru", depth=8, sampler="TPESampler", objective="bits",
        maximize=True, values=[math.nan, -INF, 6.0, 4.0, 0.5],
        feasible=[False, False, True, True, True], pruned=[False, False, False, True, False],
        task="parentheses",
    )  # fmt: skip
    study.feasible[0] = True  # a feasible trial without a finite value: no curve point yet
    (run,) = tr.study_runs([study])
    assert run["name"] == "gp-gru-d8"
    assert run["config"] == {
        "cell": {"name": "gru"}, "depth": 8, "task": {"name": "parentheses"},
        "sampler": "TPESampler", "objective": "bits", "study": "gp-gru-d8",
        "direction": "maximize",
    }  # fmt: skip
    assert run["history"] == [
        {"trial": 0, "diverged": 0, "pruned": 0},
        {"trial": 1, "diverged": 1, "pruned": 0},
        {"trial": 2, "diverged": 0, "pruned": 0, "objective": 6.0, "best_so_far": 6.0,
         "running_median": 6.0},
        {"trial": 3, "diverged": 0, "pruned": 1, "objective": 4.0, "best_so_far": 6.0,
         "running_median": 5.0},
        {"trial": 4, "diverged": 0, "pruned": 0, "objective": 0.5, "best_so_far": 6.0,
         "running_median": 4.0},
    ]  # fmt: skip
    assert run["summary"] == {
        "trials": 5, "diverged": 1, "pruned": 1, "diverged_share": 0.2, "best": 6.0,
        "median": 4.0,
    }  # fmt: skip


def add_study(storage, name, cell, depth, sampler, values, maximize=True, pruned=0):
    direction = "maximize" if maximize else "minimize"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    for key, value in {"cell": cell, "depth": depth, "sampler": sampler}.items():
        study.set_user_attr(key, value)
    study.set_user_attr("objective", "bits")
    worst = -INF if maximize else INF
    for v in values:
        status = "diverged" if v is None else "ok"
        value = worst if v is None else v
        study.add_trial(create_trial(value=value, user_attrs={"status": status}))
    for _ in range(pruned):  # stopped by the pruner: finished, not diverged, not on the curves
        stop = create_trial(state=TrialState.PRUNED, value=0.5, intermediate_values={10: 0.5})
        stop.user_attrs["status"] = "pruned"
        study.add_trial(stop)
    study.add_trial(create_trial(state=TrialState.FAIL))  # a crash: not counted
    return study


@pytest.fixture
def storage(tmp_path):
    url = f"sqlite:///{tmp_path}/studies.db"
    add_study(url, "rnd-rnn-d1", "rnn", 1, "RandomSampler", [1.0, None, 2.0, None])
    add_study(url, "rnd-rnn-d8", "rnn", 8, "RandomSampler", [1.0, 3.0], pruned=1)
    add_study(url, "rnd-gru-d1", "gru", 1, "RandomSampler", [None, 4.0, 5.0, 6.0, 7.0])
    add_study(url, "rnd-gru-d2", "gru", 2, "RandomSampler", [None])  # depth not in the table
    add_study(url, "gp-gru-d1", "gru", 1, "GPSampler", [2.0, None, 6.0, 4.0], pruned=1)
    add_study(url, "rnd-lstm-d8", "lstm", 8, "RandomSampler", [])  # nothing finished yet
    return url


def test_infeasible_table_pools_by_cell_and_depth(storage, cell_configs):
    studies = [s for s in tr.load_studies(storage) if s.sampler == "RandomSampler"]
    rows = tr.infeasible_table([s for s in studies if s.depth in (1, 8)], cell_configs)
    counts = [{k: r[k] for k in ("cell", "depth", "trials", "diverged", "pruned")} for r in rows]
    assert counts == [  # cells in the paper's order
        {"cell": "rnn", "depth": 1, "trials": 4, "diverged": 2, "pruned": 0},
        {"cell": "rnn", "depth": 8, "trials": 3, "diverged": 0, "pruned": 1},
        {"cell": "gru", "depth": 1, "trials": 5, "diverged": 1, "pruned": 0},
        {"cell": "lstm", "depth": 8, "trials": 0, "diverged": 0, "pruned": 0},
    ]
    # percent and Wilson 95% interval: 2/4 -> [15.0, 85.0], 0/3 -> [0, 56.1], 1/5 -> [3.6, 62.4]
    assert [(r["percent"], r["percent_low"], r["percent_high"]) for r in rows] == [
        (50.0, 15.0, 85.0),
        (0.0, 0.0, 56.1),
        (20.0, 3.6, 62.4),
        (None, None, None),
    ]
    assert tr.table_markdown(rows, [1, 8], CONF) == (  # no trial recorded its first loss
        "| cell | depth 1 non-finite | depth 1 loss above start | depth 8 non-finite "
        "| depth 8 loss above start |\n"
        "|---|---|---|---|---|\n"
        "| RNN | 50.0 [15.0, 85.0] (2/4) | - | 0.0 [0.0, 56.1] (0/3) | - |\n"
        "| GRU | 20.0 [3.6, 62.4] (1/5) | - | - | - |\n"
        "| LSTM | - | - | - | - |\n"
    )


def test_a_storage_without_random_settings_says_so():
    assert tr.table_markdown([], [1, 8], CONF) == "No random-settings studies in this storage.\n"


def test_wilson_interval_by_hand():
    """z = 1.96: 0 of n -> [0, z^2/(n + z^2)]; n/2 of n is symmetric about 1/2; the interval
    narrows as 1/sqrt(n)."""
    z2 = 1.959964**2
    low, high = tr.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(z2 / (10 + z2))
    low, high = tr.wilson_interval(50, 100)
    assert low + high == pytest.approx(1.0) and high - 0.5 == pytest.approx(0.0960, abs=1e-3)
    low4, high4 = tr.wilson_interval(200, 400)
    assert (high4 - low4) == pytest.approx((high - low) / 2, rel=0.02)
    assert all(math.isnan(v) for v in tr.wilson_interval(0, 0))


def test_report_writes_figure_tables_and_summary(storage, tmp_path, cell_configs):
    out = tmp_path / "report"
    summary = tr.report(storage, out, curve_sampler="GPSampler", conf_dir=cell_configs)
    # the pruned trial is on the curves at its last value (0.5): median of [2, 6, 4, 0.5]
    assert summary["best"] == {"gp-gru-d1": 6.0} and summary["median"] == {"gp-gru-d1": 3.0}
    assert summary["percent_infeasible"] == {
        "rnn-d1": 50.0,
        "rnn-d8": 0.0,
        "gru-d1": 20.0,
        "lstm-d8": None,
    }
    assert summary["percent_nonfinite"] == summary["percent_infeasible"]
    assert summary["percent_loss_above_start"] == dict.fromkeys(summary["settings"])  # none
    assert summary["percent_infeasible_95"]["rnn-d1"] == [15.0, 85.0]
    assert summary["settings"] == {"rnn-d1": 4, "rnn-d8": 3, "gru-d1": 5, "lstm-d8": 0}
    low, high = summary["best_95"]["gp-gru-d1"][1:]
    assert 2.0 <= low <= 6.0 == high  # the best of resampled trials is at most the best
    (depth1,) = summary["most_trainable"].values()
    assert depth1["median"]["verdict"] == "not comparable"  # one cell, no task: no verdict
    assert depth1["trials_per_cell"] == {"gru": 5}
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok", "ok", "pruned"]
    assert [float(r["best"]) for r in rows] == [2.0, 2.0, 6.0, 6.0, 6.0]
    assert [float(r["median"]) for r in rows] == [2.0, 2.0, 4.0, 4.0, 3.0]
    assert rows[4]["value"] == "0.5"
    assert rows[1]["value"] == ""  # an infeasible trial has no objective
    table = list(csv.DictReader((out / "infeasible.csv").open()))
    assert [(r["cell"], r["depth"], r["percent"]) for r in table] == [
        ("rnn", "1", "50.0"),
        ("rnn", "8", "0.0"),
        ("gru", "1", "20.0"),
        ("lstm", "8", ""),
    ]
    assert "| RNN | 50.0 [15.0, 85.0] (2/4) | - |" in (out / "infeasible.md").read_text()
    assert [r["pruned"] for r in table] == ["0", "1", "0", "0"]  # counted apart


def test_command_line(storage, tmp_path, capsys):
    out = str(tmp_path / "r")
    main(
        ["trainability", "--storage", storage, "--out", out, "--depths", "1", "--wandb", "disabled"]
    )
    text = capsys.readouterr().out
    printed, end = json.JSONDecoder().raw_decode(text)
    assert printed["percent_infeasible"] == {"gru-d1": 20.0, "rnn-d1": 50.0}
    assert printed["best"] == {"gp-gru-d1": 6.0}  # curves: every study but the random ones
    lines = text[end:].strip().splitlines()
    assert lines[0] == f"storage {storage}"
    assert lines[1].startswith("depth 1 median: not comparable; leader gru 3 [")


# ---- verdicts with uncertainty ------------------------------------------------------------------
def test_bootstrap_by_hand():
    from rnncap.analysis.verdicts import bootstrap_final

    same = bootstrap_final([2.0] * 5, [True] * 5, maximize=False)
    assert same == {"median": [2.0, 2.0, 2.0], "best": [2.0, 2.0, 2.0]}  # nothing to vary
    got = bootstrap_final([1.0, 2.0, 3.0, INF], [True, True, True, False], maximize=False)
    assert got["median"][0] == 2.0 and got["best"][0] == 1.0
    assert got["median"][1:] == [1.0, 3.0]  # resampled medians run from 1 to 3
    # a resample holds neither 1 nor 2 with probability (2/4)^4 = 0.06 > 0.025: up to 3
    assert got["best"][1:] == [1.0, 3.0]
    assert bootstrap_final([INF], [False], maximize=True) == {"median": None, "best": None}
    again = bootstrap_final([1.0, 2.0, 3.0, INF], [True, True, True, False], maximize=False)
    assert again == got  # seeded


def cells_of(**medians):
    """Per cell {trials, median, best} with [value, low, high] intervals as given."""
    return {c: {"trials": 8, "median": list(m), "best": list(m)} for c, m in medians.items()}


@pytest.mark.parametrize(
    ("cells", "depth", "word", "leader", "margin"),
    [
        (cells_of(gru=(0.09, 0.085, 0.095), rnn=(0.2, 0.15, 0.3)), 1, "agrees", "gru", 0.11),
        (cells_of(gru=(0.3, 0.25, 0.35), rnn=(0.1, 0.05, 0.2)), 1, "disagrees", "rnn", 0.2),
        # the issue's depth 1: 0.092 against 0.095, overlapping intervals
        (cells_of(gru=(0.092, 0.08, 0.1), rnn=(0.095, 0.09, 0.11)), 1, "not separated", "gru",
         0.003),
        (cells_of(gru=(0.1, 0.09, 0.11), rnn=(0.2, 0.15, 0.3)), 2, "not comparable", "gru", 0.1),
    ],
)  # fmt: skip
def test_verdict_words_leaders_and_margins(cells, depth, word, leader, margin):
    from rnncap.analysis.verdicts import verdict

    got = verdict(cells, depth, "parentheses", maximize=False, chance=None)
    assert got["median"]["verdict"] == word and got["best"]["verdict"] == word
    assert got["median"]["leader"] == leader
    assert got["median"]["margin"] == pytest.approx(margin)
    assert got["comparable"] == (depth in (1, 8))


def test_verdict_of_a_one_cell_capacity_study_is_not_comparable():
    from rnncap.analysis.verdicts import verdict

    one = verdict(cells_of(rnn=(5.0, 4.0, 6.0)), 1, "capacity", maximize=True, chance=None)
    assert one["median"]["verdict"] == one["best"]["verdict"] == "not comparable"
    assert "capacity is not one of the paper's trainability tasks" in one["reason"]
    two = verdict(cells_of(rnn=(5, 4, 6), gru=(1, 0, 2)), 1, "capacity", True, None)
    assert two["median"]["verdict"] == "not comparable"  # a capacity study, whatever its cells


def test_chance_check_says_when_only_one_cell_left_the_constant_loss():
    from rnncap.analysis.verdicts import verdict

    cells = cells_of(intersection=(0.5, 0.4, 0.6), gru=(1.2, 1.1, 1.3), rnn=(1.25, 1.2, 1.3))
    got = verdict(cells, 8, "parentheses", maximize=False, chance=1.0)
    assert got["median"]["verdict"] == "agrees"
    assert got["median"]["left_chance"] == got["best"]["left_chance"] == ["intersection"]
    assert got["median"]["note"].startswith(
        "only intersection's median beat the constant-prediction 1: it leads by construction"
    )
    none = verdict(cells, 8, "parentheses", maximize=False, chance=0.1)
    assert none["best"]["left_chance"] == [] and none["best"]["note"].startswith("no cell's best")
    # medians 0.5 / 1.2 / 1.25 against a constant 1.22: two cells left it, no note
    both = verdict(cells, 8, "parentheses", maximize=False, chance=1.22)
    assert "note" not in both["median"] and both["median"]["left_chance"] == ["intersection", "gru"]
    # the issue's depth 8: bests all below the constant, medians all but the +RNN's above it
    split = {"intersection": {"trials": 24, "median": [0.504] * 3, "best": [0.147] * 3},
             "gru": {"trials": 24, "median": [0.91] * 3, "best": [0.702] * 3}}  # fmt: skip
    issue = verdict(split, 8, "parentheses", maximize=False, chance=0.9)
    assert "note" in issue["median"] and "note" not in issue["best"]
    lines = tr_lines(issue)
    assert "depth 8 median: only intersection's median beat" in lines


def tr_lines(one_depth):
    from rnncap.analysis.verdicts import verdict_lines

    return "\n".join(verdict_lines({"8": one_depth}))


def test_constant_prediction_loss_of_parentheses_matches_its_sampled_targets():
    import torch

    from rnncap.analysis.verdicts import constant_objective
    from rnncap.tasks.parentheses import ParenthesesTask

    settings = {"streams": 3, "noise_symbols": 4, "max_count": 2, "steps": 30}
    task = ParenthesesTask.with_keys(**settings)
    _, targets = task.sequences(40000, torch.Generator().manual_seed(0)).tensors
    shares = torch.bincount(targets.flatten(), minlength=3).double() / targets.numel()
    entropy = float(-(shares * shares.log()).sum())
    assert constant_objective("parentheses", "loss", settings) == pytest.approx(entropy, abs=2e-3)
    majority = float(shares.max())
    assert constant_objective("parentheses", "accuracy", settings) == pytest.approx(
        majority, abs=5e-3
    )
    # one step, 2 streams, no noise: ( with 1/4, else depth 0: H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    one = {"streams": 2, "noise_symbols": 0, "max_count": 5, "steps": 1}
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert constant_objective("parentheses", "loss", one) == pytest.approx(h)
    assert constant_objective("capacity", "bits", one) is None


def test_loss_above_start_counts_runs_whose_final_loss_exceeds_the_first(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="rnd-gru-d1", storage=url)
    for key, value in {"cell": "gru", "depth": 1, "sampler": "RandomSampler"}.items():
        study.set_user_attr(key, value)
    losses = [(1.8, 0.5), (1.8, 2.5), (1.7, 1.7), (None, None), (1.8, 0.4)]
    for first, final in losses:  # above start: the second only (equal is not above)
        attrs = {"status": "ok", "metrics.first_loss": first, "metrics.final_loss": final}
        study.add_trial(create_trial(value=final or 1.0, user_attrs=attrs))
    study.add_trial(create_trial(value=INF, user_attrs={"status": "diverged"}))  # both count it
    (rows,) = tr.infeasible_table(tr.load_studies(url), CONF)
    assert (rows["trials"], rows["diverged"], rows["percent"]) == (6, 1, 16.7)
    assert (rows["recorded"], rows["above_start"], rows["above_percent"]) == (5, 2, 40.0)
    assert [rows["above_low"], rows["above_high"]] == [11.8, 76.9]  # Wilson 2/5
    text = tr.table_markdown([rows], [1], CONF)
    assert "| GRU | 16.7 [3.0, 56.4] (1/6) | 40.0 [11.8, 76.9] (2/5) |" in text
    (loaded,) = tr.load_studies(url)
    assert loaded.feasible_by("loss_above_start") == [True, False, True, True, True, False]
    summary = tr.report(url, tmp_path / "o", curve_sampler="RandomSampler", depths=[1],
                        conf_dir=CONF, diverged="loss_above_start")  # fmt: skip
    assert summary["percent_infeasible"] == {"gru-d1": 40.0}
    assert summary["percent_nonfinite"] == {"gru-d1": 16.7}
    assert summary["median"] == {"rnd-gru-d1": 0.75}  # of 0.5, 1.7, 1.0 (no record), 0.4


# ---- rnncap trainability on one's own sweep ------------------------------------------------------
def test_without_storage_it_reads_where_the_sweeper_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "tune").mkdir(parents=True)
    add_study("sqlite:///results/tune/studies.db", "capacity-rnn", "rnn", 1, "TPESampler", [1.0])
    main(["trainability", "--out", "r", "--wandb", "disabled"])
    assert "storage sqlite:///results/tune/studies.db" in capsys.readouterr().out
    (tmp_path / "results" / "tune" / "studies.db").unlink()
    with pytest.raises(SystemExit) as stop:
        main(["trainability", "--out", "r2", "--wandb", "disabled"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --storage: not given") and "\n" not in err


def test_two_studies_of_one_cell_are_told_apart_and_counted_whole(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    for name in ("gru-a", "gru-b"):  # two studies of 8 trials of one cell and depth
        study = add_study(url, name, "gru", 1, "TPESampler", [1.0 + i for i in range(8)])
        study.set_user_attr("task", "parentheses")
    add_study(url, "rnn-a", "rnn", 1, "TPESampler", [5.0] * 8).set_user_attr("task", "parentheses")
    studies = tr.load_studies(url)
    from rnncap.analysis.trainability_figure import series_labels

    labels = series_labels(studies, CONF)
    assert labels == {"gru-a": "GRU (gru-a)", "gru-b": "GRU (gru-b)", "rnn-a": "RNN"}
    depth1 = tr.verdicts(studies)["1"]
    assert depth1["trials_per_cell"] == {"gru": 16, "rnn": 8}
    assert depth1["cells"]["gru"]["studies"] == 2
    tr.report(url, tmp_path / "o", curve_sampler="TPESampler", conf_dir=CONF)
    assert (tmp_path / "o" / "curves.png").stat().st_size > 10_000


def test_reads_a_journal_storage(tmp_path, monkeypatch):
    """The tune stage writes a journal file (its workers report while the sweeper writes)."""
    monkeypatch.chdir(tmp_path)
    backend = optuna.storages.journal.JournalFileBackend("studies.log")
    add_study(
        optuna.storages.JournalStorage(backend), "j-rnn-d1", "rnn", 1, "GPSampler", [2.0, 1.0]
    )
    (study,) = tr.load_studies("journal:///studies.log")
    assert study.name == "j-rnn-d1" and study.values == [2.0, 1.0]


def test_tune_grid_commands():
    from rnncap import tune_grid

    tune = {
        "storage": "results/t.log",
        "runs": "results/runs",
        "task": "parentheses",
        "budget": 300,
        "cells": ["rnn", "intersection"],
        "depths": [1, 8],
        "overrides": "task.steps=5 hardware=cpu",  # params.yaml's style
        "studies": {
            "curves": {
                "sweep": "members",
                "sampler": "tpe",
                "optimizers": ["adam"],
                "n_trials": 4,
                "population": 2,
                "pruner": "median",
                "pruner_args": "hydra.sweeper.pruner_args={n_startup_trials:1}",
                "overrides": "trainer.max_steps=5",
            },
            "random": {
                "sweep": "members",
                "sampler": "random",
                "optimizers": ["adam", "sgd"],
                "n_trials": 3,
                "population": 3,
            },
            "skipped": {"cells": [], "sweep": "members", "sampler": "random", "n_trials": 1},
            "searched": {
                "cells": ["gru"],
                "sweep": "gp",
                "sampler": "gp",
                "optimizers": None,
                "n_trials": 2,
                "population": 2,
            },
        },
    }
    (g1, curves), (g2, random), (g3, searched) = tune_grid.study_commands(tune, jobs=2)
    assert (g1, g2, g3) == ("curves", "random", "searched")  # an empty cell list: skipped
    assert "cell=gru" in searched and "hydra.sweeper.grid=[cell,depth]" in searched
    assert not any(a.startswith("optimizer=") for a in searched)  # searched by its space
    assert curves == [
        "-m",
        "sweep=members",
        "hydra/sweeper/sampler=tpe",
        "task=parentheses",
        "cell=rnn,intersection",
        "depth=1,8",
        "optimizer=adam",
        "model.budget=300",
        "hydra.sweeper.grid=[cell,depth,optimizer]",
        "hydra.sweeper.study_name=curves",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.population=2",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_args={n_startup_trials:1}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.storage=journal:///results/t.log",
        "hydra.sweep.dir=results/runs/curves",
        "trainer.checkpoint_every=null",
        "trainer.enable_progress_bar=false",
        "save_weights=false",
        "task.steps=5",
        "hardware=cpu",
        "trainer.max_steps=5",
    ]
    assert "optimizer=adam,sgd" in random and "hydra.sweeper.pruner=null" in random


def test_tune_grid_dry_run_of_the_params_grid(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # where train.py and conf/ are
    main(["train-grid", "trainability", "--params", "params.yaml", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("hydra.sweep.dir=")[1].split()[0] for line in lines] == [
        f"results/trainability/runs/{group}" for group in ("curves", "random", "random_relu")
    ]
    assert "cell=rnn,gru,lstm,ugrnn depth=1,8" in lines[2] and "cell.nonlinearity=relu" in lines[2]
    assert "sweep=members hydra/sweeper/sampler=tpe task=parentheses" in lines[0]
    assert "cell=rnn,irnn,gru,lstm,ugrnn,intersection depth=1,8" in lines[0]
    assert "optimizer=adam,rmsprop,sgd" in lines[1]
    assert not (ROOT / "results" / "tune" / "dry").exists()
