"""Capacity analysis: max over b and seeds, fits, memory curve and metrics, on synthetic runs;
the shared tables and cell display; the `rnncap` command line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import CELL_NAMES, CONF

from rnncap.analysis.capacity import (
    analyse,
    capacity_fits,
    capacity_table,
    fit_through_origin,
    memory_gaps,
    memory_table,
    summary,
    theory_mse,
)
from rnncap.analysis.tables import (
    ALL_DEPTHS,
    cell_display,
    cell_sort_key,
    read_csv,
    read_runs,
    write_csv,
)
from rnncap.cli import main, param_overrides


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
    for depth in (1, 2):  # per depth, never pooled
        gru = metrics["capacity"]["gru"][f"depth{depth}"]
        own = [r for r in result["table"] if (r["cell"], r["depth"]) == ("gru", depth)]
        mean = sum(r["bits_per_param"] for r in own) / 4
        assert gru["mean_bits_per_param"] == pytest.approx(mean, abs=1e-4)  # rounded to 4 places
        assert gru["mean_bits_per_param"] == pytest.approx(4.2, rel=0.08)
        assert gru["mean_lo"] < gru["mean_bits_per_param"] < gru["mean_hi"]
        assert gru["slope_lo"] < gru["slope"] < gru["slope_hi"]
        assert (gru["sizes"], gru["rising"], gru["unknown"]) == (4, 0, 4)  # no records: unknown
        assert {p["convergence"] for p in gru["points"].values()} == {"unknown"}
    assert set(metrics["capacity"]["lstm"]) == {"depth1", "depth2"}
    table = read_csv(tmp_path / "out" / "capacity.csv")
    assert len(table) == 3 * 2 * 4 and {r["runs"] for r in table} == {4}
    # seeds 0, 1 and 2 of a size are three points, none with a record
    assert {(r["points"], r["convergence"], r["compute"]) for r in table} == {(3, "unknown", None)}


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


def test_memory_curve_takes_the_best_run_per_width_and_compares_with_theory(cell_configs):
    runs = [
        memory_run("gru", 16, 0.80),
        memory_run("gru", 16, 0.78, seed=1),
        memory_run("gru", 16, None, seed=2, status="diverged"),
        memory_run("gru", 64, 0.10, theory=False),  # theory filled in when a run lacks it
        memory_run("rnn", 32, 0.52),
        capacity_run("rnn", 1, 100, 50.0),  # not a memory run
    ]
    table = memory_table(runs, cell_configs)
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
    one_size = json.loads(text)["capacity"]["rnn"]["depth1"]
    assert "NaN" not in text and one_size["slope"] == one_size["mean_bits_per_param"] == 3.0
    assert one_size["slope_lo"] is one_size["mean_hi"] is None  # one size: no interval


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


# ---- how cells are shown: read from their classes through conf/cell -------------------------
PAPER_ORDER = ["rnn", "ugrnn", "gru", "lstm", "intersection", "irnn"]
PAPER_LOOK = {  # the labels and colours of the paper's figures as rnncap has drawn them
    "rnn": ("RNN", "#1f77b4"),
    "ugrnn": ("UGRNN", "#2ca02c"),
    "gru": ("GRU", "#d62728"),
    "lstm": ("LSTM", "#ff7f0e"),
    "intersection": ("+RNN", "#9467bd"),
    "irnn": ("IRNN", "#8c564b"),
}


def test_every_cell_config_is_shown_by_its_display_in_the_paper_order(cell_configs):
    shown = sorted(CELL_NAMES, key=lambda c: cell_sort_key(c, cell_configs))
    assert shown[: len(PAPER_ORDER)] == PAPER_ORDER  # the paper's six first, then any others
    for name, (label, color) in PAPER_LOOK.items():
        look = cell_display(name, cell_configs)
        assert (look.label, look.color) == (label, color)


def write_cell_config(cells: Path, name: str, body: str) -> None:
    cells.mkdir(parents=True, exist_ok=True)
    (cells / f"{name}.yaml").write_text(body)


def test_a_new_cell_appears_with_its_own_display_or_a_fallback(tmp_path):
    from rnncap.analysis.plots import capacity_figure

    cells = tmp_path / "configs" / "cell"
    shown = "_target_: rnncap.cells.rnn.RNNCell\nname: {}\ndisplay:\n  label: {}\n"
    write_cell_config(cells, "rnn", shown.format("rnn", "RNN") + "  color: '#1f77b4'\n  rank: 0\n")
    write_cell_config(cells, "minimal", shown.format("minimal", "minRNN") + "  color: '#123456'\n")
    (cells / "minimal.yaml").write_text((cells / "minimal.yaml").read_text() + "  rank: 1.5\n")
    write_cell_config(cells, "gru", "name: gru\ndisplay: {label: GRU, color: '#d62728', rank: 2}\n")
    write_cell_config(cells, "relu_rnn", "name: relu_rnn\nnonlinearity: relu\n")  # no display
    write_cell_config(cells, "nolabel", "name: nolabel\ndisplay:\n  label: null\n")
    write_cell_config(cells, "broken", "just text\n")
    assert cell_display("minimal", cells).label == "minRNN"
    unknown = [cell_display(c, cells) for c in ("relu_rnn", "nolabel", "broken", "no_config")]
    assert [d.label for d in unknown] == ["RELU_RNN", "NOLABEL", "BROKEN", "NO_CONFIG"]
    assert all(d.rank == math.inf for d in unknown)
    configured = {"#1f77b4", "#123456", "#d62728"}
    assert not configured & {d.color for d in unknown}  # a colour no configured cell uses
    assert cell_display("broken", cells) == cell_display("broken", cells)  # stable per name
    rows = [
        {"cell": c, "depth": 1, "params": p, "capacity": 3.0 * p}
        for c in ("relu_rnn", "gru", "minimal", "rnn")
        for p in (100, 1000)
    ]
    (ax,) = capacity_figure(rows, cells).get_axes()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["RNN", "minRNN", "GRU", "RELU_RNN"]  # ranked first, unknown after
    colors = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colors["minRNN"] == "#123456"


# ---- the command line ----------------------------------------------------------------------
def test_fit_prints_the_headline_and_plot_writes_the_figures(tmp_path, capsys, cell_configs):
    write_runs(tmp_path / "runs", synthetic_grid({"gru": 4.0}, np.random.default_rng(0)))
    tables = tmp_path / "tables"
    common = ["--wandb", "disabled", "--cell-configs", str(cell_configs)]
    fit = ["fit", "--runs", str(tmp_path / "runs"), "--out", str(tables)]
    main([*fit, "--metrics", str(tmp_path / "m.json"), "--boot", "50", *common])
    printed = capsys.readouterr().out
    assert "read 32 runs" in printed
    # per cell and depth: mean over sizes [interval], slope [interval], never pooled or nan
    assert re.search(r"\n +GRU +1 +4\.\d\d \[\d\.\d\d, \d\.\d\d\] +4\.\d\d \[", printed)
    assert "nan" not in printed
    main(["plot", "--tables", str(tables), "--out", str(tmp_path / "fig"), *common])
    names = {p.stem for p in (tmp_path / "fig").glob("*.png")}
    assert names == {"capacity_vs_params", "bits_per_param", "convergence", "memory_per_unit"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--runs", "no/such/dir"], "error: --runs no/such/dir: no such folder"),
        (["fit", "--runs", ".", "--boot", "0"], "error: --boot=0 must be a positive integer"),
        (["fit", "--runs", ".", "--studies", "x.db"], "error: --studies x.db: not a storage URL"),
        (["plot", "--tables", "."], "error: --tables . has no capacity.csv (rnncap fit writes it)"),
        (["trainability", "--storage", "sqlite:///no.db"], "error: --storage sqlite:///no.db: no"),
        (["train-grid", "x", "--params", "no.yaml"], "error: --params no.yaml: no such file"),
        (["generate", "data", "x.pt", "task.nope=1"], "error: overrides task.nope=1: Could not"),
        (["generate", "data", "x.pt", "task.samples=100", "task.input_dim=4"],
         "error: task.samples=100 exceeds"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").symlink_to(CONF)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "x.pt").exists()


def test_param_overrides_turn_one_params_file_into_another():
    old = {"a": 1, "b": {"c": [1, 2], "d": "x y", "e": None}, "gone": 3}
    new = {"a": 1, "b": {"c": [1, 2, 4], "d": 'say "hi"', "e": True}, "f": 0.5}
    assert param_overrides(new, old) == [
        "b.c=[1,2,4]",
        'b.d="say \\"hi\\""',
        "b.e=true",
        "++f=0.5",
        "~gone",
    ]
