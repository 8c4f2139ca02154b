"""The time-to-quality benchmark (benchmarks/tuning.py): its curves from a synthetic study and
synthetic successive-halving jobs (a finished one and one stopped at the budget), and, marked
slow, a --quick run of every mode through benchmarks/run.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import ROOT, load_benchmark
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

T0 = 1_800_000_000.0  # a wall-clock origin (seconds)


def load_tuning() -> ModuleType:
    return load_benchmark("tuning")


def trial(state: TrialState, value: float | None, end: float, **attrs: object) -> FrozenTrial:
    made = create_trial(
        state=state,
        value=value,
        params={"lr": 0.01},
        distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs=attrs,
        intermediate_values={250: 10.0} if state == TrialState.PRUNED else None,
    )
    made.datetime_start = datetime.fromtimestamp(T0 + end - 5)
    made.datetime_complete = datetime.fromtimestamp(T0 + end)
    return made


def test_trial_curve_keeps_new_bests_on_the_budget_clock(tmp_path: Path) -> None:
    tuning = load_tuning()
    (tmp_path / "c").mkdir()  # no metrics.params attribute: read from its metrics.json
    (tmp_path / "c" / "metrics.json").write_text(json.dumps({"params": 500}))
    done = [
        trial(TrialState.COMPLETE, 1000.0, 20, **{"metrics.params": 500}),
        trial(TrialState.COMPLETE, -math.inf, 30, status="diverged"),
        trial(TrialState.PRUNED, None, 40, status="pruned"),
        trial(TrialState.COMPLETE, 900.0, 60, **{"metrics.params": 500}),  # not a new best
        trial(TrialState.COMPLETE, 1500.0, 250, run_dir=str(tmp_path / "c")),
    ]
    elapsed = tuning.slice_clock([(T0, T0 + 100), (T0 + 200, T0 + 300)])  # 200 s of budget
    # budget seconds: 20 s into slice 1; 100 s of slice 1 + 50 s into slice 2
    assert tuning.trial_curve(done, elapsed) == [(20.0, 2.0), (150.0, 3.0)]


def job(folder: Path, rows: list[dict], params: int, end: float, finished: bool) -> None:
    """A successive-halving job folder: metrics.json (finished) or only its last rung
    checkpoint and train.log (stopped mid-rung), written at wall-clock ``T0 + end``."""
    folder.mkdir(parents=True)
    if finished:
        path = folder / "metrics.json"
        path.write_text(json.dumps({"params": params, "convergence": rows}))
    else:
        path = folder / "checkpoints" / "last.ckpt"
        path.parent.mkdir()
        state = {"rows": rows, "compute": 1.0, "wall_s": rows[-1]["wall_s"], "trained": []}
        torch.save({"convergence": state}, path)
        model = {"cell": "rnn", "params": params, "population": 4}
        (folder / "train.log").write_text(f"[t][rnncap.core.run][INFO] - model: {model}\n")
    os.utime(path, (T0 + end, T0 + end))


def row(rung: int, wall_s: float, best_bits: float | None) -> dict:
    steps = 10 * 4**rung
    return {"rung": rung, "steps": steps, "members": 1, "compute": 1.0 * steps} | {
        "wall_s": wall_s,
        "best_bits": best_bits,
    }


def test_rung_curve_reads_finished_and_stopped_jobs(tmp_path: Path) -> None:
    tuning = load_tuning()
    runs = tmp_path / "runs"
    # job 0 finished at T0 + 90 after 80 s of training: rung ends at T0 + 20, 50, 90
    job(runs / "0", [row(0, 10, 100.0), row(1, 40, None), row(2, 80, 300.0)], 100, 90, True)
    # job 1 was stopped in its third rung; its checkpoint (T0 + 150) holds two rung ends
    job(runs / "1", [row(0, 20, 250.0), row(1, 50, 400.0)], 100, 150, False)
    (runs / "2").mkdir()  # started, no rung ended: nothing to read
    jobs = tuning.job_dirs(runs)
    assert [p.name for p in jobs] == ["0", "1", "2"]

    curve, rung_ends = tuning.rung_curve(jobs, tuning.slice_clock([(T0, T0 + 200)]))

    assert rung_ends == 4  # the row with no finite bits is no point
    # job 0's rows sit at T0 + 10 + wall_s, job 1's at T0 + 100 + wall_s; job 1's first rung
    # end (T0 + 120, 2.5 bits/param) is below job 0's best: no new point
    assert curve == [(20.0, 1.0), (90.0, 3.0), (150.0, 4.0)]


def test_mode_overrides_give_each_key_once() -> None:
    tuning = load_tuning()
    for mode in tuning.MODES:
        for quick in (False, True):
            keys = [o.split("=", 1)[0] for o in tuning.mode_overrides(mode, quick)[1:]]
            assert len(keys) == len(set(keys)), (mode, quick)
    quick = tuning.mode_overrides("capacity", quick=True)
    assert "trainer.max_steps=40" in quick and "trainer.max_steps=16000" not in quick


@pytest.mark.slow
def test_quick_run_curves_rise_within_the_budget(tmp_path: Path) -> None:
    """Every mode at --quick size (a 60-parameter budget, tens of steps): each mode finishes
    something, its curve rises and stays inside the budget, and its best is the curve's last
    point; the JSON and the PNG are written."""
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--parts"]
    command += ["tuning", "--tuning-minutes", "2", "--tuning-out", str(tmp_path / "runs")]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "--json", str(out)], check=True, env=env, cwd=ROOT, timeout=900)
    results = json.loads(out.read_text())
    rows, curves = results["tuning"], results["tuning_curves"]
    assert [r["mode"] for r in rows] == list(load_tuning().MODES)
    for r in rows:
        curve = curves[r["mode"]]
        assert curve, r["mode"]
        times, values = zip(*curve, strict=True)
        assert list(times) == sorted(times) and times[0] >= 0 and times[-1] <= r["budget_s"]
        assert all(b > a for a, b in zip(values, values[1:], strict=False))
        assert r["best_bits_per_param"] == pytest.approx(values[-1], abs=1e-4)
        assert r["wall_s"] <= r["budget_s"] + 1 and r["trials"] > 0
    assert out.with_suffix(".png").stat().st_size > 0


def load_probe() -> ModuleType:
    return load_benchmark("capacity_probe")


@pytest.mark.parametrize(
    ("schedule", "done", "scale"),
    [
        ("const", 0.7, 1.0),
        ("cos", 0.5, 0.5),
        ("cos", 1.0, 0.0),
        ("lin", 0.25, 0.75),
        ("exp", 0.5, 0.1),
    ],
)
def test_probe_rate_schedules_by_hand(schedule, done, scale):
    """exp to 1e-2 of the rate is 1e-1 half way; cosine is 1/2 half way and 0 at the end."""
    assert load_probe().rate_scale(schedule, done, 1e-2) == pytest.approx(scale, abs=1e-12)


def test_probe_hinge_losses_by_hand():
    probe = load_probe()
    logits, labels = torch.tensor([2.0, 0.5, -0.5]), torch.tensor([1.0, 1.0, 1.0])
    assert probe.loss_of("hinge", logits, labels).item() == pytest.approx((0 + 0.5 + 1.5) / 3)
    assert probe.loss_of("sqhinge", logits, labels).item() == pytest.approx((0.25 + 2.25) / 3)


def test_probe_refuses_a_minibatch_above_b():
    command = [sys.executable, str(ROOT / "benchmarks" / "capacity_probe.py")]
    out = subprocess.run([*command, "--samples", "10", "--batch", "11"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--batch=11" in out.stderr
