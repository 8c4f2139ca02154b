"""The distance and counting analyses (``rnncap distance``, ``rnncap counting``) on hand-made
run folders, their training grids' command lines and their bad input; a slow end-to-end run
of tiny grids, which also checks the hand-made runs against real ones."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from conftest import ROOT

from rnncap.analysis import counting, distance
from rnncap.analysis.tables import read_csv
from rnncap.cli import main
from rnncap.experiments import grid_commands

RNNCAP = Path(sys.executable).parent / "rnncap"


# ---- hand-made runs, shaped as train.py writes them (checked in the slow test) ---------------
def distance_run(cell, depth, hidden, params, delay, accuracy, seed=0, status="ok", length=16):
    """A ``task=distance`` metrics.json; accuracy None = diverged (metrics null)."""
    done = accuracy is not None
    return {
        "cell": cell,
        "task": "distance",
        "depth": depth,
        "hidden": hidden,
        "input_dim": 4,
        "params": params,
        "seed": seed,
        "status": status if done else "diverged",
        "symbols": 4,
        "length": length,
        "delay": delay,
        "samples": 2000,
        "accuracy": accuracy,
        "loss": 0.1 if done else None,
        "recalled_bits": 1.0 if done else None,
        "first_loss": 1.4,
        "final_loss": 0.1 if done else None,
    }


def counting_run(cell, depth, hidden, params, accuracies, saturation, seed=0):
    """A ``task=counting`` metrics.json; ``accuracies``: length -> accuracy, the first at the
    training length 20; None = diverged."""
    lengths = [40, 200]
    run = {
        "cell": cell,
        "task": "counting",
        "depth": depth,
        "hidden": hidden,
        "input_dim": 2,
        "params": params,
        "seed": seed,
        "status": "ok" if accuracies else "diverged",
        "train_length": 20,
        "test_lengths": lengths,
        "max_count": 5,
        "samples": 2000,
        "accuracy": None,
        "loss": None,
        "long_accuracy": None,
        "saturation": None,
        "first_loss": 0.7,
        "final_loss": None,
        **{f"long_accuracy_{n}": None for n in lengths},
    }
    if accuracies:
        run |= {"accuracy": accuracies[20], "loss": 0.1, "saturation": saturation}
        run |= {f"long_accuracy_{n}": accuracies[n] for n in lengths}
        run["long_accuracy"] = accuracies[max(lengths)]
    return run


def write_run(root: Path, name: str, metrics: dict) -> None:
    """A run folder as Hydra and train.py leave it: metrics.json and .hydra/config.yaml."""
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / "metrics.json").write_text(json.dumps(metrics))
    config = {"cell": {"name": metrics["cell"]}, "task": {"name": metrics["task"]}}
    (root / name / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


# ---- max distance ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "accuracies, threshold, expected",
    [
        ({1: 0.95, 2: 0.91, 3: 0.5, 4: 0.95}, 0.9, 2),  # a failure caps it; 4 passes in vain
        ({1: 0.8, 2: 0.95}, 0.9, 0),  # the smallest fails
        ({1: None, 2: 1.0}, 0.9, 0),  # no finished run = failed
        ({4: 1.0, 1: 1.0, 2: 0.99}, 0.9, 4),  # unsorted input; every delay passes
        ({1: 0.9, 2: 0.8999}, 0.9, 1),  # the threshold itself passes
        ({1: 1.0, 2: 0.999}, 1.0, 1),
        ({1: math.nan, 2: 1.0}, 0.5, 0),  # NaN never passes
    ],
)
def test_max_distance_is_the_largest_delay_before_the_first_failure(
    accuracies, threshold, expected
):
    assert distance.max_distance(accuracies, threshold) == expected


def test_distance_tables_figure_and_summary_from_hand_made_runs(tmp_path, capsys, cell_configs):
    runs = tmp_path / "runs"
    cases = [  # rnn 4 units: delay 3 fails in seed 0 but passes in seed 1 (best of seeds)
        distance_run("rnn", 1, 4, 60, 1, 1.0),
        distance_run("rnn", 1, 4, 60, 2, 0.97),
        distance_run("rnn", 1, 4, 60, 3, 0.5),
        distance_run("rnn", 1, 4, 60, 3, 0.93, seed=1),
        distance_run("rnn", 1, 4, 60, 4, 0.6),
        distance_run("rnn", 1, 4, 60, 6, 0.95),  # passes after a failure: largest_passed
        # gru 8 units: delay 2 diverged, 4 passes: max distance 1
        distance_run("gru", 1, 8, 356, 1, 0.99),
        distance_run("gru", 1, 8, 356, 2, None),
        distance_run("gru", 1, 8, 356, 4, 0.92),
        # +RNN at depth 2: 2 x 3 units; passes everything tested (censored)
        distance_run("intersection", 2, 3, 150, 1, 1.0),
        distance_run("intersection", 2, 3, 150, 2, 0.9),
    ]
    for i, run in enumerate(cases):
        write_run(runs, f"r{i}", run)
    write_run(runs, "other", counting_run("gru", 1, 8, 300, {20: 1, 40: 1, 200: 1}, 0.1))
    out = tmp_path / "out"
    main(["distance", "--runs", str(runs), "--out", str(out), "--cell-configs", str(cell_configs)])
    assert "read 11 runs" in capsys.readouterr().out
    rows = {r["cell"]: r for r in read_csv(out / "max_distance.csv")}
    assert [r["cell"] for r in read_csv(out / "max_distance.csv")] == ["rnn", "gru", "intersection"]
    expect = {  # max_distance, largest_passed, censored, units (the bound d <= N)
        "rnn": (3, 6, "False", 4),
        "gru": (1, 4, "False", 8),
        "intersection": (2, 2, "True", 6),
    }
    for cell, (best, largest, censored, units) in expect.items():
        row = rows[cell]
        got = (row["max_distance"], row["largest_passed"], row["censored"], row["units"])
        assert got == (best, largest, censored, units), cell
        assert row["unit_bound"] == units and row["per_unit"] == pytest.approx(best / units)
        assert "bits_bound" not in row  # recall is held in the state: no parameter bound
    accuracy = read_csv(out / "accuracy.csv")
    rnn3 = next(r for r in accuracy if r["cell"] == "rnn" and r["delay"] == 3)
    assert (rnn3["accuracy"], rnn3["runs"]) == (0.93, 2)
    gru2 = next(r for r in accuracy if r["cell"] == "gru" and r["delay"] == 2)
    assert (gru2["accuracy"], gru2["diverged"]) == (None, 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {
        "threshold": 0.9,
        "cells": {
            "rnn": {"max_distance": 3, "d1_n4": 3},
            "gru": {"max_distance": 1, "d1_n8": 1},
            "intersection": {"max_distance": 2, "d2_n3": 2},
        },
    }
    assert matplotlib.image.imread(out / "max_distance.png").shape[2] in (3, 4)
    # a stricter threshold: rnn fails delay 2 (0.97), gru keeps delay 1 (0.99)
    strict = tmp_path / "strict"
    main(["distance", "--runs", str(runs), "--out", str(strict), "--threshold", "0.98"])
    rows = {r["cell"]: r["max_distance"] for r in read_csv(strict / "max_distance.csv")}
    assert rows == {"rnn": 1, "gru": 1, "intersection": 1}


# ---- counting ----------------------------------------------------------------------------------
def test_runs_of_another_task_setting_are_another_row(tmp_path, cell_configs):
    runs = tmp_path / "runs"
    for length, accuracies in [(16, (1.0, 0.95)), (30, (1.0, 0.5))]:
        for delay, accuracy in enumerate(accuracies, start=1):
            write_run(runs, f"T{length}-{delay}", distance_run("gru", 1, 4, 132, delay, accuracy,
                                                               length=length))  # fmt: skip
    result = distance.analyse(runs, tmp_path / "out", 0.9, cell_configs)
    assert [(r["length"], r["max_distance"]) for r in result["table"]] == [(16, 2), (30, 1)]
    assert result["summary"]["cells"]["gru"] == {
        "max_distance": 2,
        "d1_n4_K4_T16": 2,
        "d1_n4_K4_T30": 1,
    }


def test_counting_tables_figure_and_summary_from_hand_made_runs(tmp_path, cell_configs):
    runs = tmp_path / "runs"
    write_run(runs, "lstm-s0", counting_run("lstm", 1, 8, 422, {20: 1.0, 40: 0.9, 200: 0.5}, 0.2))
    write_run(runs, "lstm-s1", counting_run("lstm", 1, 8, 422, {20: 0.96, 40: 0.7, 200: 0.4},
                                            0.4, seed=1))  # fmt: skip
    write_run(runs, "lstm-s2", counting_run("lstm", 1, 8, 422, None, None, seed=2))  # diverged
    write_run(runs, "irnn", counting_run("irnn", 1, 8, 150, {20: 0.8, 40: 0.6, 200: 0.3}, None))
    write_run(runs, "dist", distance_run("lstm", 1, 8, 468, 2, 1.0))  # another task: ignored
    out = tmp_path / "out"
    main(["counting", "--runs", str(runs), "--out", str(out), "--cell-configs", str(cell_configs)])
    curve = read_csv(out / "long_accuracy.csv")
    lstm = [(r["length"], r["accuracy"], r["accuracy_min"], r["accuracy_max"], r["runs"])
            for r in curve if r["cell"] == "lstm"]  # fmt: skip
    expected = [(20, 0.98, 0.96, 1.0, 2), (40, 0.8, 0.7, 0.9, 2), (200, 0.45, 0.4, 0.5, 2)]
    assert lstm == [pytest.approx(row) for row in expected]
    assert {r["diverged"] for r in curve if r["cell"] == "lstm"} == {1}
    table = {r["cell"]: r for r in read_csv(out / "counting.csv")}
    assert [r["cell"] for r in read_csv(out / "counting.csv")] == ["lstm", "irnn"]  # paper order
    row = table["lstm"]
    got = (row["accuracy"], row["longest"], row["long_accuracy"], row["saturation"], row["runs"])
    assert got == pytest.approx((0.98, 200, 0.45, 0.3, 3))
    assert table["irnn"]["saturation"] is None
    assert row["long_majority"] == pytest.approx(counting.majority_baseline(200, 5)[1])
    base = {r["length"]: (r["majority"], r["majority_class"]) for r in curve}
    assert base[20] == pytest.approx(counting.majority_baseline(20, 5)[::-1])  # 0.302, class 1
    assert base[200][1] == 5 and base[200][0] > 0.5  # deep strings: "always 5" beats 0.45
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cells"]["irnn"]["d1_n8"] == {
        "accuracy": 0.8,
        "longest": 200,
        "long_accuracy": 0.3,
        "long_majority": pytest.approx(counting.majority_baseline(200, 5)[1]),
        "saturation": None,
    }
    assert summary["cells"]["lstm"]["d1_n8"]["long_accuracy"] == pytest.approx(0.45)
    assert matplotlib.image.imread(out / "long_accuracy.png").shape[2] in (3, 4)


def test_majority_baseline_is_exact_on_hand_cases_and_matches_sampled_walks():
    # length 2: open then close, depths 1, 0 (a tie: the lower class); length 4: depths
    # 1, (2 or 0), 1, 0 -> class 1 on half the steps, 0 on 3/8, 2 on 1/8
    assert counting.majority_baseline(2, 5) == (0, 0.5)
    assert counting.class_shares(4, 5)[:3] == pytest.approx([0.375, 0.5, 0.125])
    assert counting.majority_baseline(4, 1) == (1, 0.625)  # capped at 1: depths 1 and 2 merge
    import torch

    from rnncap.tasks.counting import dyck_walks
    from rnncap.tasks.parentheses import capped_depths

    walks = dyck_walks(3000, 200, torch.Generator().manual_seed(0))
    targets = capped_depths(walks, 1, 5)[..., 0].flatten()
    sampled = torch.bincount(targets, minlength=6).double() / targets.numel()
    assert counting.class_shares(200, 5) == pytest.approx(sampled.numpy(), abs=0.01)
    assert counting.majority_baseline(200, 5)[0] == 5


# ---- the training grids ------------------------------------------------------------------------
def test_the_distance_and_counting_grids_of_params_yaml(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cells, deep = grid_commands(ROOT / "params.yaml", "distance")
    grid = params["grids"]["distance"]
    assert {"task=distance", f"cell={','.join(grid['cells'])}", "depth=1"} <= set(cells)
    assert {"cell=intersection", "depth=2"} <= set(deep)  # the +RNN needs depth >= 2
    for command in (cells, deep):
        assert f"task.delay={','.join(map(str, grid['delays']))}" in command
        assert f"model.hidden={','.join(map(str, grid['widths']))}" in command
        assert f"trainer.max_steps={grid['train']['max_steps']}" in command
        assert f"task.length={grid['task']['length']}" in command
        assert "hydra/launcher=joblib" in command
        assert f"hydra.launcher.n_jobs={params['jobs']}" in command
        assert "hydra.sweep.dir=results/distance/runs" in command
        subdir = (
            "hydra.sweep.subdir=${cell.name}-d${depth}-n${model.hidden}-delay${task.delay}-s${seed}"
        )
        assert subdir in command
        assert max(grid["delays"]) < grid["task"]["length"]  # every delay is a valid run
    cells, deep = grid_commands(ROOT / "params.yaml", "counting")
    task = params["grids"]["counting"]["task"]
    lengths = f"task.test_lengths=[{','.join(map(str, task['test_lengths']))}]"
    for command in (cells, deep):
        assert {"task=counting", lengths, "hydra.sweep.dir=results/counting/runs"} <= set(command)
        assert not any(a.startswith("task.delay") for a in command)
    assert min(task["test_lengths"]) >= task["train_length"]
    # a grid without deep cells is one command
    small = tmp_path / "p.yaml"
    params["grids"]["counting"] |= {"deep_cells": [], "cells": ["gru"]}
    small.write_text(yaml.safe_dump(params))
    (only,) = grid_commands(small, "counting")
    assert "cell=gru" in only


def test_train_grid_dry_run_prints_the_commands_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    main(["train-grid", "counting", "--dry-run"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(p.startswith("run: python train.py -m task=counting")
                                     for p in printed)  # fmt: skip


# ---- bad input ---------------------------------------------------------------------------------
BAD_INPUT = [  # (kind, argv with RUNS for a folder of one distance run, what the error says)
    ("distance: no runs folder", ["distance", "--runs", "no/dir"], "--runs no/dir: no such folder"),
    ("counting: no runs folder", ["counting", "--runs", "no/dir"], "--runs no/dir: no such folder"),
    ("distance: empty folder", ["distance", "--runs", "EMPTY"], "no finished task=distance run"),
    ("counting: distance runs only", ["counting", "--runs", "RUNS"], "no finished task=counting"),
    ("threshold 0", ["distance", "--runs", "RUNS", "--threshold", "0"], "--threshold=0.0 must"),
    ("threshold above 1", ["distance", "--runs", "RUNS", "--threshold", "1.5"], "(0, 1]"),
    ("threshold negative", ["distance", "--runs", "RUNS", "--threshold=-0.1"], "--threshold=-0.1"),
    ("threshold NaN", ["distance", "--runs", "RUNS", "--threshold", "nan"], "--threshold=nan"),
]


@pytest.mark.parametrize("kind, argv, message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, kind,
                                                          argv, message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    write_run(tmp_path / "RUNS", "r0", distance_run("gru", 1, 4, 132, 1, 1.0))
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", "out"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


# ---- end to end (slow) -------------------------------------------------------------------------
def rnncap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([str(RNNCAP), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


@pytest.mark.slow
def test_tiny_grids_train_then_analyse_and_match_the_hand_made_runs(tmp_path):
    for name in ("train.py", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["jobs"] = 1
    tiny = {"cells": ["gru"], "depths": [1], "deep_cells": ["intersection"], "deep_depths": [2],
            "widths": [2], "seeds": [0]}  # fmt: skip
    grids = params["grids"]
    grids["distance"] |= tiny | {"delays": [1, 2]}
    grids["distance"]["task"] |= {"samples": 32, "eval_samples": 16}
    grids["counting"] |= tiny
    grids["counting"]["task"] |= {"samples": 32, "eval_samples": 8, "test_samples": 4,
                                   "test_lengths": [40, 200]}  # fmt: skip
    for grid in ("distance", "counting"):
        grids[grid]["train"]["max_steps"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for grid, figure in (("distance", "max_distance.png"), ("counting", "long_accuracy.png")):
        proc = rnncap("train-grid", grid, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs = sorted((tmp_path / "results" / grid / "runs").rglob("metrics.json"))
        assert len(runs) == (4 if grid == "distance" else 2)
        proc = rnncap("analyse", grid, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = tmp_path / "results" / grid / "report"
        assert matplotlib.image.imread(out / figure).shape[2] in (3, 4)
        assert json.loads((out / "summary.json").read_text())["cells"].keys() == {
            "gru",
            "intersection",
        }
        real = json.loads(runs[0].read_text())
        made = (distance_run("gru", 1, 2, 1, 1, 1.0) if grid == "distance"
                else counting_run("gru", 1, 2, 1, {20: 1, 40: 1, 200: 1}, 0.1))  # fmt: skip
        assert real.keys() == made.keys(), grid  # the hand-made runs have the real shape
        assert (runs[0].parent / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "results/distance/runs/gru-d1-n2-delay1-s0/metrics.json").is_file()
