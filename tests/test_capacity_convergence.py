"""Capacity points' convergence (best bits against compute, the last doubling's gain, the
verdict), the headline per cell and depth (mean bits/param over sizes and slope with intervals),
and the figures that show them: each against a hand-computed case."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib.colors
import pytest
from matplotlib.container import BarContainer
from matplotlib.patches import Rectangle

from rnncap.analysis.capacity import (
    analyse,
    capacity_fits,
    capacity_table,
    fit_through_origin,
    headline_table,
    main,
    mean_with_interval,
)
from rnncap.analysis.convergence import capacity_points, doubling_gain, point_curve, verdict
from rnncap.analysis.plots import (
    bits_per_param_figure,
    capacity_figure,
    convergence_figure,
    memory_figure,
)


def rows(compute, best, wall=None):
    """A job's convergence record: one row per evaluation."""
    wall = wall or [float(i + 1) for i in range(len(compute))]
    return [
        {"rung": i, "steps": 10 * (i + 1), "members": 1, "compute": c, "wall_s": w, "best_bits": b}
        for i, (c, w, b) in enumerate(zip(compute, wall, best, strict=True))
    ]


def job(record, params=100, status="ok", seed=0, cell="rnn", depth=1, run="s/0", **extra):
    run_row = {"cell": cell, "task": "capacity", "depth": depth, "params": params, "seed": seed,
               "hidden": params // 10, "status": status, "run": run, **extra}  # fmt: skip
    best = [r["best_bits"] for r in record or [] if r["best_bits"] is not None]
    run_row["bits"] = max(best, default=None)
    if record is not None:
        run_row["convergence"] = record
    return run_row


# ---- one point's curve ----------------------------------------------------------------------
def test_jobs_concatenate_with_compute_and_wall_offset_and_a_running_max():
    first = job(rows([100, 200], [10, 20], wall=[1, 2]))
    second = job(rows([50, 150], [15, 30], wall=[5, 6]))
    curve = point_curve([first, second])
    assert [r["compute"] for r in curve] == [100, 200, 250, 350]
    assert [r["wall_s"] for r in curve] == [1, 2, 7, 8]
    assert [r["best_bits"] for r in curve] == [10, 20, 20, 30]  # 15 < 20: the max carries
    # half of 350 is 175: the last row at or below it is compute 100 with 10 bits
    assert doubling_gain(curve, params=10) == pytest.approx((30 - 10) / 10)


def test_the_last_doubling_gain_decides_saturated_or_rising():
    curve = point_curve([job(rows([1, 2, 4, 8], [100, 200, 250, 254]))])
    gain = doubling_gain(curve, params=100)  # (254 - 250) / 100: compute 4 is half of 8
    assert gain == pytest.approx(0.04)
    assert verdict(gain) == "saturated"  # the default threshold, 0.05 bits/param
    assert verdict(gain, saturation_gain=0.03) == "rising"
    assert verdict(None) == "unknown"


def test_one_evaluation_cannot_show_saturation():
    curve = point_curve([job(rows([1000], [50]))])  # before it: nothing stored, 0 bits
    assert doubling_gain(curve, params=100) == pytest.approx(0.5)
    assert verdict(doubling_gain(curve, 100)) == "rising"


def test_a_job_without_a_record_makes_the_point_unknown_and_a_diverged_job_counts_no_bits():
    assert point_curve([job(rows([1], [5])), job(None)]) is None
    diverged = job(rows([100], [80]), status="diverged")
    curve = point_curve([job(rows([100], [20])), diverged])
    assert [(r["compute"], r["best_bits"]) for r in curve] == [(100, 20), (200, 20)]
    assert point_curve([job(rows([10, 20], [None, None]))])[-1]["best_bits"] is None
    assert doubling_gain(point_curve([job(rows([10], [None]))]), 100) is None


def test_a_point_counts_final_weights_as_its_capacity_and_the_curve_as_evaluated():
    """A member scored 50 bits at a rung end, trained on and ended at 40: the point's
    capacity is the final 40 (as capacity.csv), the curve's best stays 50."""
    lost = {**job(rows([100, 200], [50, 50])), "bits": 40.0}
    (point,), _ = capacity_points([lost])
    assert point["best_bits"] == 50 and point["bits_per_param"] == pytest.approx(0.4)
    (size,) = capacity_table([lost], points=[point])
    assert size["bits_per_param"] == pytest.approx(point["bits_per_param"])


def test_points_group_a_study_folders_jobs_in_natural_order():
    jobs = [  # one study folder, jobs 10 and 2 (2 runs first), and a second budget, same model
        job(rows([400], [60]), run="cap-b200/10"),
        job(rows([100, 200], [10, 50]), run="cap-b200/2"),
        job(rows([100], [30]), run="cap-b100/0"),
        job(rows([100], [40]), seed=1, run="cap-b100/1"),
        {**job(rows([1], [1])), "task": "memory"},  # not a capacity run
    ]
    points, curves = capacity_points(jobs)
    named = {(p["point"], p["seed"]): p for p in points}
    assert set(named) == {("p100-s0", 0), ("p100-s0#2", 0), ("p100-s1", 1)}
    two_jobs = next(p for p in points if p["jobs"] == 2)
    assert (two_jobs["compute"], two_jobs["best_bits"]) == (600, 60)
    # job 2's rows, then job 10's offset by 200: compute 100, 200, 600; half of 600 is 300,
    # and the last row at or below it is compute 200 with 50 bits
    assert two_jobs["doubling_gain"] == pytest.approx((60 - 50) / 100)
    assert two_jobs["convergence"] == "rising" and two_jobs["bits_per_param"] == 0.6
    mine = [r for r in curves if r["point"] == two_jobs["point"]]
    assert [(r["compute"], r["bits_per_param"]) for r in mine] == [
        (100, 0.1),
        (200, 0.5),
        (600, 0.6),
    ]


def test_a_size_is_rising_when_any_of_its_points_is_and_its_compute_is_their_sum(cell_configs):
    saturated = rows([1, 2, 4, 8], [100, 200, 250, 254])  # gain 0.04
    rising = rows([1, 2, 4, 8], [100, 150, 200, 250])  # gain 0.5
    runs = [job(saturated, run="a/0"), job(rising, seed=1, run="b/0")]
    (row,) = capacity_table(runs, cell_configs)
    assert (row["points"], row["compute"], row["wall_s"]) == (2, 16, 8)
    assert row["convergence"] == "rising" and row["doubling_gain"] == pytest.approx(0.5)
    (row,) = capacity_table([job(saturated, run="a/0"), job(None, seed=1, run="b/0")], cell_configs)
    assert row["convergence"] == "unknown" and row["compute"] is None
    assert row["doubling_gain"] == pytest.approx(0.04)
    (row,) = capacity_table([job(saturated, run="a/0")], cell_configs)
    assert row["convergence"] == "saturated"


# ---- the headline per cell and depth --------------------------------------------------------
def test_mean_of_bits_per_param_with_a_bootstrap_interval_over_sizes():
    hand = mean_with_interval([1.0, 2.0, 6.0], boot=2000)
    assert hand["mean_bits_per_param"] == pytest.approx(3.0)
    # a resampled mean of three of {1, 2, 6} lies in [1, 6]; the interval is wide and holds 3
    assert 1.0 <= hand["mean_lo"] < 3.0 < hand["mean_hi"] <= 6.0
    one = mean_with_interval([2.5, math.nan])
    assert one["mean_bits_per_param"] == 2.5 and math.isnan(one["mean_lo"])
    assert math.isnan(one["mean_hi"])
    equal = mean_with_interval([2.0, 2.0])  # two sizes that agree: a true zero-width interval
    assert equal["mean_lo"] == equal["mean_hi"] == 2.0


def test_one_size_has_no_interval_for_the_slope_either():
    fit = fit_through_origin([100], [250])
    assert fit["slope"] == 2.5 and math.isnan(fit["slope_lo"]) and math.isnan(fit["slope_hi"])


def test_fits_per_depth_carry_mean_slope_and_how_many_sizes_are_rising(cell_configs):
    saturated = [1, 2, 4, 8], [100, 200, 250, 254]
    runs = [
        job(rows(*saturated), params=100, run="a/0"),  # 2.54 bits/param, saturated
        job(rows([1, 2], [100, 300]), params=200, run="b/0"),  # 1.5 bits/param, rising
        job(rows(*saturated), params=100, depth=2, run="c/0"),
    ]
    fits = {(f["cell"], f["depth"]): f for f in capacity_fits(capacity_table(runs, cell_configs))}
    depth1 = fits[("rnn", 1)]
    assert depth1["mean_bits_per_param"] == pytest.approx((2.54 + 1.5) / 2)
    assert depth1["slope"] == pytest.approx((100 * 254 + 200 * 300) / (100**2 + 200**2))
    assert (depth1["sizes"], depth1["rising"], depth1["unknown"]) == (2, 1, 0)
    assert math.isnan(fits[("rnn", 2)]["mean_lo"])  # one size at depth 2


def write_jobs(root: Path, runs: list[dict]) -> None:
    for run in runs:
        (root / run["run"]).mkdir(parents=True)
        (root / run["run"] / "metrics.json").write_text(json.dumps(run))


def test_analyse_writes_points_curves_and_the_headline_per_depth(
    cell_configs, tmp_path, capsys, monkeypatch
):
    runs = [
        job(rows([1, 2, 4, 8], [100, 200, 250, 254]), params=100, run="rnn-100/0"),
        job(rows([1, 2, 4, 8], [100, 200, 250, 300]), params=200, run="rnn-200/0"),  # 0.25
        job(rows([1, 2], [50, 90]), params=100, cell="gru", run="gru-100/0"),
        {**job(None, params=300, cell="gru", run="gru-300/0"), "bits": 600.0},  # no record
    ]
    write_jobs(tmp_path / "runs", runs)
    metrics = tmp_path / "capacity.json"
    result = analyse(tmp_path / "runs", tmp_path / "out", metrics, boot=200, conf_dir=cell_configs,
                     saturation_gain=0.1)  # fmt: skip
    doc = json.loads(metrics.read_text())
    assert doc["saturation_gain"] == 0.1
    rnn = doc["capacity"]["rnn"]["depth1"]
    assert rnn["mean_bits_per_param"] == pytest.approx((2.54 + 1.5) / 2)
    assert rnn["points"] == {
        "p100-s0": {"bits_per_param": 2.54, "doubling_gain": 0.04, "convergence": "saturated"},
        "p200-s0": {"bits_per_param": 1.5, "doubling_gain": 0.25, "convergence": "rising"},
    }
    gru = doc["capacity"]["gru"]["depth1"]
    assert (gru["sizes"], gru["rising"], gru["unknown"]) == (2, 1, 1)
    assert gru["points"]["p300-s0"]["convergence"] == "unknown"
    curves = (tmp_path / "out" / "convergence.csv").read_text().splitlines()
    assert curves[0] == "point,cell,depth,params,seed,compute,wall_s,best_bits,bits_per_param"
    assert len(curves) == 1 + 4 + 4 + 2  # the unknown point has no curve
    assert len(result["points"]) == 4
    table = headline_table(doc, cell_configs)
    assert "  RNN         1   2.02 [1.50, 2.54]" in table
    lines = {line.split()[0]: line.split() for line in table.splitlines()[-2:]}
    assert lines["GRU"][-3:] == ["2", "1", "1"]  # sizes, rising, unknown
    shutil.copytree(cell_configs, tmp_path / "results" / "configs" / "cell")
    monkeypatch.chdir(tmp_path)  # where make run calls it: results/configs/cell below it
    main([str(metrics)])  # python -m rnncap.analysis.capacity results/capacity.json
    assert capsys.readouterr().out == table + "\n"


def test_headline_table_prints_a_dash_for_an_interval_of_one_size(cell_configs):
    doc = {"capacity": {"rnn": {"depth2": {"mean_bits_per_param": 2.5, "mean_lo": None,
           "mean_hi": None, "slope": 2.4, "slope_lo": None, "slope_hi": None, "sizes": 1,
           "rising": 0, "unknown": 0, "points": {}}}}}  # fmt: skip
    line = headline_table(doc, cell_configs).splitlines()[-1]
    assert line.split() == ["RNN", "2", "2.50", "-", "2.40", "-", "1", "0", "0"]


# ---- figures --------------------------------------------------------------------------------
def size_row(params, status, cell="rnn", depth=1):
    return {"cell": cell, "depth": depth, "params": params, "capacity": 2.0 * params,
            "convergence": status}  # fmt: skip


def test_capacity_figure_marks_rising_sizes_hollow_saturated_filled_unknown_crossed(cell_configs):
    table = [size_row(100, "saturated"), size_row(300, "rising"), size_row(1000, None)]
    fig = capacity_figure(table, cell_configs)
    (ax,) = fig.get_axes()
    marked = {}
    for line in ax.get_lines():
        for x in line.get_xdata() if line.get_marker() not in ("None", "", None) else []:
            marked[x] = (line.get_marker(), line.get_markerfacecolor())
    blue = matplotlib.colors.to_rgba("#1f77b4")
    assert marked[300] == ("o", "none")  # rising: hollow
    assert marked[100][0] == "o" and matplotlib.colors.to_rgba(marked[100][1]) == blue
    assert marked[1000][0] == "x"  # no record (an older table): unknown
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key[0].startswith("saturated (last doubling of compute: < 0.05")
    assert key[1].startswith("still rising") and key[2] == "no convergence record"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["RNN"]


def fit_row(cell, depth, mean, lo, hi, rising=0):
    interval = {"slope_lo": lo, "slope_hi": hi, "mean_lo": lo, "mean_hi": hi}
    return {"cell": cell, "depth": depth, "slope": mean, "mean_bits_per_param": mean,
            **interval, "rising": rising}  # fmt: skip


def test_bits_per_param_figure_draws_no_interval_for_one_size_and_cell_coloured_swatches(
    cell_configs,
):
    fits = [
        fit_row("rnn", 1, 2.5, 2.0, 3.0, rising=1),
        fit_row("rnn", 2, 2.2, math.nan, math.nan),  # one size
        fit_row("gru", 1, 2.0, 1.8, 2.1),
        fit_row("gru", "all", 9.0, 8.0, 10.0),  # pooled: not drawn
    ]
    fig = bits_per_param_figure(fits, cell_configs)
    mean_ax, slope_ax = fig.get_axes()
    for ax in (mean_ax, slope_ax):
        containers = [c for c in ax.containers if isinstance(c, BarContainer)]
        bars = {round(b.patches[0].get_height(), 3): b for b in containers}
        assert set(bars) == {2.5, 2.2, 2.0}
        assert bars[2.2].errorbar is None  # one size: no (zero-width) interval
        (segments,) = bars[2.5].errorbar.lines[2]
        assert sorted(segments.get_segments()[0][:, 1]) == [2.0, 3.0]
        assert bars[2.5].patches[0].get_hatch() == "///" and not bars[2.0].patches[0].get_hatch()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()][:2] == ["1 layer", "2 layers"]
    fig.canvas.draw()  # a depth's swatch: each cell's colour at that depth's shade, not grey
    swatches = [matplotlib.colors.to_hex(r.get_facecolor()) for r in legend.findobj(Rectangle)]
    dark = [matplotlib.colors.to_hex([0.55 * c for c in matplotlib.colors.to_rgb(hex_)])
            for hex_ in ("#1f77b4", "#d62728")]  # fmt: skip
    assert swatches[:4] == ["#1f77b4", "#d62728", *dark]  # RNN, GRU at depth 1, then depth 2


def test_memory_figure_labels_the_line_where_units_equal_inputs(cell_configs):
    memory = [{"cell": "rnn", "depth": 1, "input_dim": 16, "input_scale": 1.0, "delay": 4,
               "hidden": n, "mse": 0.5} for n in (4, 8)]  # fmt: skip
    (ax,) = memory_figure(memory, cell_configs).get_axes()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "N = 16: as many units as inputs" in labels


def test_convergence_figure_draws_each_points_curve_on_log_compute(cell_configs):
    runs = [
        job(rows([1, 2, 4, 8], [100, 200, 250, 254]), run="a/0"),
        job(rows([1, 2], [100, 300]), params=200, run="b/0"),
        job(rows([1, 2], [100, 300]), params=200, depth=2, cell="gru", run="c/0"),
    ]
    points, curves = capacity_points(runs)
    fig = convergence_figure(curves, points, cell_configs)
    depth1, depth2 = fig.get_axes()[:2]
    assert depth1.get_xscale() == "log" and depth1.get_title() == "1 layer"
    steps = [line for line in depth1.get_lines() if line.get_drawstyle() == "steps-post"]
    assert sorted(list(line.get_xdata()) for line in steps) == [[1, 2], [1, 2, 4, 8]]
    ends = {line.get_xdata()[0]: line.get_markerfacecolor() for line in depth1.get_lines()
            if line.get_marker() == "o"}  # fmt: skip
    assert ends[2] == "none" and ends[8] != "none"  # 200 params rising, 100 saturated
    assert [t.get_text() for t in depth2.get_legend().get_texts()] == ["GRU"]
