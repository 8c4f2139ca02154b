"""Capacity analysis: max over b and seeds, fits, memory curve and metrics, on synthetic runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rnncap.analysis.capacity import (
    ALL_DEPTHS,
    analyse,
    capacity_fits,
    capacity_table,
    fit_through_origin,
    memory_gaps,
    memory_table,
    read_csv,
    read_runs,
    summary,
    theory_mse,
    write_csv,
)


def capacity_run(cell, depth, params, bits, samples=1000, seed=0, status="ok", hidden=None):
    return {
        "cell": cell,
        "task": "capacity",
        "depth": depth,
        "hidden": hidden or params // 10,
        "params": params,
        "seed": seed,
        "status": status,
        "samples": samples,
        "accuracy": None if bits is None else 0.9,
        "bits": bits,
        "bits_per_param": None if bits is None else bits / params,
    }


def write_runs(root: Path, runs: list[dict]) -> None:
    for i, run in enumerate(runs):
        (root / f"run{i}").mkdir(parents=True)
        (root / f"run{i}" / "metrics.json").write_text(json.dumps(run))


def synthetic_grid(slopes: dict[str, float], rng: np.random.Generator) -> list[dict]:
    """Per cell and depth, sizes whose best run stores slope * params bits (5% noise), plus
    worse runs at other b and seeds and a diverged run, as the training stage would leave."""
    runs = []
    for cell, slope in slopes.items():
        for depth in (1, 2):
            for params in (100, 300, 1000, 3000):
                best = slope * params * (1 + 0.05 * rng.standard_normal())
                runs.append(capacity_run(cell, depth, params, best, samples=4 * params))
                runs.append(capacity_run(cell, depth, params, 0.6 * best, samples=8 * params))
                runs.append(capacity_run(cell, depth, params, 0.9 * best, seed=1))
                runs.append(capacity_run(cell, depth, params, None, seed=2, status="diverged"))
    return runs


def test_capacity_is_the_max_over_b_and_seeds_ignoring_diverged_runs():
    runs = [
        capacity_run("gru", 1, 200, 30.0, samples=100),
        capacity_run("gru", 1, 200, 120.0, samples=400),
        capacity_run("gru", 1, 200, 90.0, samples=800, seed=1),
        capacity_run("gru", 1, 200, None, samples=1600, status="diverged"),
        capacity_run("gru", 2, 200, 50.0, samples=400),
        {**capacity_run("gru", 1, 200, 999.0), "task": "rcf"},  # another task: not counted
    ]
    table = capacity_table(runs)
    assert [(r["depth"], r["capacity"]) for r in table] == [(1, 120.0), (2, 50.0)]
    first = table[0]
    assert first["bits_per_param"] == pytest.approx(120.0 / 200)
    assert (first["best_samples"], first["runs"], first["diverged"]) == (400, 4, 1)


def test_a_size_whose_runs_all_diverged_has_no_capacity_and_is_left_out_of_fits():
    runs = [
        capacity_run("lstm", 1, 100, None, status="diverged"),
        capacity_run("lstm", 1, 400, 800),
    ]
    table = capacity_table(runs)
    assert math.isnan(table[0]["capacity"]) and table[1]["capacity"] == 800
    fit = next(f for f in capacity_fits(table) if f["depth"] == 1)
    assert fit["sizes"] == 1 and fit["slope"] == pytest.approx(2.0)


def test_fit_through_origin_hand_computed():
    fit = fit_through_origin([1, 2, 3], [1, 2, 6], boot=500)
    assert fit["slope"] == pytest.approx((1 + 4 + 18) / (1 + 4 + 9))
    # every resampled slope is an x^2-weighted mean of the ratios y/x, which lie in [1, 2]
    assert 1.0 <= fit["slope_lo"] <= fit["slope"] <= fit["slope_hi"] <= 2.0
    assert fit["exponent"] == pytest.approx(np.polyfit(np.log([1, 2, 3]), np.log([1, 2, 6]), 1)[0])
    exact = fit_through_origin([10, 100, 1000], [50, 500, 5000])
    assert exact["slope"] == exact["slope_lo"] == exact["slope_hi"] == pytest.approx(5.0)
    assert exact["exponent"] == pytest.approx(1.0)


def test_fit_recovers_known_slopes_from_synthetic_metrics(tmp_path):
    slopes = {"rnn": 5.0, "gru": 4.2, "lstm": 3.5}
    write_runs(tmp_path / "runs", synthetic_grid(slopes, np.random.default_rng(0)))
    result = analyse(tmp_path / "runs", tmp_path / "out", tmp_path / "metrics.json", boot=1000)
    fits = {(f["cell"], f["depth"]): f for f in result["fits"]}
    for cell, slope in slopes.items():
        pooled = fits[(cell, ALL_DEPTHS)]
        assert pooled["slope"] == pytest.approx(slope, rel=0.05)
        assert pooled["slope_lo"] < pooled["slope"] < pooled["slope_hi"]
        assert 0.01 * slope < pooled["slope_hi"] - pooled["slope_lo"] < 0.2 * slope
        assert pooled["exponent"] == pytest.approx(1.0, abs=0.05)
        assert pooled["sizes"] == 8
        for depth in (1, 2):
            assert fits[(cell, depth)]["slope"] == pytest.approx(slope, rel=0.08)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["capacity"]["gru"]["bits_per_param"] == pytest.approx(4.2, rel=0.05)
    assert set(metrics["capacity"]["lstm"]) >= {"depth1", "depth2", "slope_lo", "slope_hi"}
    table = read_csv(tmp_path / "out" / "capacity.csv")
    assert len(table) == 3 * 2 * 4 and {r["runs"] for r in table} == {4}


def test_bootstrap_interval_covers_the_true_slope_most_of_the_time():
    """Percentile bootstrap over 8 sizes with 5% noise: nominal 95%, about 83% in fact."""
    rng, params = np.random.default_rng(0), np.array([100, 300, 1000, 3000] * 2, float)
    covered = 0
    for trial in range(200):
        capacity = 5.0 * params * (1 + 0.05 * rng.standard_normal(len(params)))
        fit = fit_through_origin(params, capacity, boot=400, seed=trial)
        covered += fit["slope_lo"] < 5.0 < fit["slope_hi"]
    assert 0.75 <= covered / 200 <= 0.99


def test_slopes_differ_when_cells_differ():
    rng = np.random.default_rng(1)
    fits = capacity_fits(capacity_table(synthetic_grid({"rnn": 5.0, "irnn": 3.5}, rng)))
    pooled = {f["cell"]: f for f in fits if f["depth"] == ALL_DEPTHS}
    assert pooled["irnn"]["slope_hi"] < pooled["rnn"]["slope_lo"]


def memory_run(cell, hidden, mse, seed=0, input_dim=64, theory=True, status="ok"):
    run = {
        "cell": cell,
        "task": "memory",
        "depth": 1,
        "hidden": hidden,
        "params": 10 * hidden,
        "seed": seed,
        "status": status,
        "input_dim": input_dim,
        "input_scale": 1.0,
        "delay": 4,
        "mse": mse,
        "r2": None if mse is None else 1 - mse,
        "mc": None if mse is None else float(hidden),
    }
    if theory:
        run["theory_mse"] = theory_mse(hidden, input_dim)
    return run


def test_theory_line():
    assert theory_mse(16, 64) == 0.75 and theory_mse(64, 64) == 0.0 and theory_mse(96, 64) == 0.0


def test_memory_curve_takes_the_best_run_per_width_and_compares_with_theory():
    runs = [
        memory_run("gru", 16, 0.80),
        memory_run("gru", 16, 0.78, seed=1),
        memory_run("gru", 16, None, seed=2, status="diverged"),
        memory_run("gru", 64, 0.10, theory=False),  # theory filled in when a run lacks it
        memory_run("rnn", 32, 0.52),
        capacity_run("rnn", 1, 100, 50.0),  # not a memory run
    ]
    table = memory_table(runs)
    assert [(r["cell"], r["hidden"]) for r in table] == [("rnn", 32), ("gru", 16), ("gru", 64)]
    gru16 = table[1]
    assert gru16["mse"] == 0.78 and gru16["r2"] == pytest.approx(0.22)
    assert (gru16["theory_mse"], gru16["runs"], gru16["diverged"]) == (0.75, 3, 1)
    assert table[2]["theory_mse"] == 0.0
    gaps = memory_gaps(table)
    assert gaps["gru"] == pytest.approx(((0.78 - 0.75) + (0.10 - 0.0)) / 2)
    assert gaps["rnn"] == pytest.approx(0.52 - 0.5)
    assert summary([], table)["memory"]["gru"]["excess_mse"] == pytest.approx(gaps["gru"])


def test_metrics_json_has_no_nan(tmp_path):
    write_runs(tmp_path / "runs", [capacity_run("rnn", 1, 100, 300.0)])
    analyse(tmp_path / "runs", tmp_path / "out", tmp_path / "m.json", boot=10)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and json.loads(text)["capacity"]["rnn"]["exponent"] is None


def test_csv_round_trip(tmp_path):
    rows = [{"cell": "rnn", "depth": 1, "x": 0.5, "y": None}, {"cell": "gru", "depth": "all"}]
    write_csv(rows, tmp_path / "t.csv", ["cell", "depth", "x", "y"])
    back = read_csv(tmp_path / "t.csv")
    assert back[0] == rows[0] and back[1] == {"cell": "gru", "depth": "all", "x": None, "y": None}


def test_read_runs_finds_nested_metrics(tmp_path):
    write_runs(tmp_path / "capacity", [capacity_run("rnn", 1, 100, 1.0)])
    write_runs(tmp_path / "memory", [memory_run("rnn", 8, 0.9)])
    runs = read_runs(tmp_path)
    assert sorted(r["run"] for r in runs) == ["capacity/run0", "memory/run0"]
