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
    add_study(url, "gp-gru-d1", "gru", 1, "GPSampler", [2.0, None, 6.0, 4.0])
    add_study(url, "rnd-lstm-d8", "lstm", 8, "RandomSampler", [])  # nothing finished yet
    return url


def test_infeasible_table_pools_by_cell_and_depth(storage):
    studies = [s for s in tr.load_studies(storage) if s.sampler == "RandomSampler"]
    rows = tr.infeasible_table([s for s in studies if s.depth in (1, 8)], CONF)
    assert rows == [  # cells in the paper's order
        {"cell": "rnn", "depth": 1, "trials": 4, "diverged": 2, "pruned": 0, "percent": 50.0},
        {"cell": "rnn", "depth": 8, "trials": 3, "diverged": 0, "pruned": 1, "percent": 0.0},
        {"cell": "gru", "depth": 1, "trials": 5, "diverged": 1, "pruned": 0, "percent": 20.0},
        {"cell": "lstm", "depth": 8, "trials": 0, "diverged": 0, "pruned": 0, "percent": None},
    ]
    assert tr.table_markdown(rows, [1, 8], CONF) == (
        "| cell | depth 1 | depth 8 |\n"
        "|---|---|---|\n"
        "| RNN | 50.0 (2/4) | 0.0 (0/3) |\n"
        "| GRU | 20.0 (1/5) | - |\n"
        "| LSTM | - | - |\n"
    )


def test_report_writes_figure_tables_and_summary(storage, tmp_path):
    out = tmp_path / "report"
    summary = tr.report(storage, out, curve_sampler="GPSampler", conf_dir=CONF)
    assert summary == {
        "best": {"gp-gru-d1": 6.0},
        "percent_infeasible": {"rnn-d1": 50.0, "rnn-d8": 0.0, "gru-d1": 20.0, "lstm-d8": None},
    }
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok", "ok"]
    assert [float(r["best"]) for r in rows] == [2.0, 2.0, 6.0, 6.0]
    assert [float(r["median"]) for r in rows] == [2.0, 2.0, 4.0, 4.0]
    assert rows[1]["value"] == ""  # an infeasible trial has no objective
    table = list(csv.DictReader((out / "infeasible.csv").open()))
    assert [(r["cell"], r["depth"], r["percent"]) for r in table] == [
        ("rnn", "1", "50.0"),
        ("rnn", "8", "0.0"),
        ("gru", "1", "20.0"),
        ("lstm", "8", ""),
    ]
    assert "| RNN | 50.0 (2/4) | 0.0 (0/3) |" in (out / "infeasible.md").read_text()
    assert [r["pruned"] for r in table] == ["0", "1", "0", "0"]  # counted apart


def test_command_line(storage, tmp_path, capsys):
    main(["trainability", "--storage", storage, "--out", str(tmp_path / "r"), "--depths", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["percent_infeasible"] == {"gru-d1": 20.0, "rnn-d1": 50.0}
    assert set(printed["best"]) - {"rnd-lstm-d8"} == {
        "rnd-rnn-d1",
        "rnd-rnn-d8",
        "rnd-gru-d1",
        "rnd-gru-d2",
        "gp-gru-d1",
    }
    assert printed["best"]["rnd-gru-d2"] is None  # nothing feasible


def test_tune_grid_commands_and_skips_invalid_combinations():
    from rnncap.analysis import tune_grid

    tune = {
        "storage": "results/t.db",
        "runs": "results/runs",
        "task": "capacity",
        "budget": 300,
        "overrides": "trainer.max_steps=5 trainer.val_check_interval=5",  # params.yaml's style
        "studies": {
            "random": {"cells": ["rnn", "intersection"], "depths": [1], "n_trials": 3},
            "gp": {"cells": ["gru"], "depths": [2], "n_trials": 4, "overrides": ["x=1"]},
            "tpe": {
                "task": "parentheses",
                "budget": 900,
                "cells": ["lstm"],
                "depths": [8],
                "n_trials": 2,
            },
        },
    }
    runs = list(tune_grid.sweep_commands(tune))
    assert [label for label, _ in runs] == [
        "random rnn depth 1",
        "random intersection depth 1",
        "gp gru depth 2",
        "tpe lstm depth 8",
    ]
    assert runs[2][1] == [
        "sweep=gp",
        "cell=gru",
        "depth=2",
        "task=capacity",
        "model.budget=300",
        "trainer.max_steps=5",
        "trainer.val_check_interval=5",
        "x=1",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.storage=sqlite:///results/t.db",
        "hydra.sweep.dir=results/runs/gp-gru-d2",
    ]
    assert runs[3][1][3:5] == ["task=parentheses", "model.budget=900"]  # the group's own
    assert tune_grid.invalid_reason(runs[0][1], CONF) is None
    assert "needs depth >= 2" in tune_grid.invalid_reason(runs[1][1], CONF)


def test_tune_grid_dry_run_of_the_params_grid(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # where train.py and conf/ are
    main(["tune-grid", "--params", "params.yaml", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run random rnn depth 1: -m sweep=random cell=rnn depth=1")
    every_trial = "trainer.checkpoint_every=null trainer.enable_progress_bar=false"
    assert f"{every_trial} task.streams=3" in lines[0]
    assert any(line.startswith("skip random intersection depth 1:") for line in lines)
