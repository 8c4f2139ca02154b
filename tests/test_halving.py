"""Successive halving inside a population job and the convergence record: the schedule, who
continues (from its state, as its solo run), who leaves the batch, the rows of metrics.json,
resumption mid-rung, and the schedules and settings refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, read_metrics, without_wall

from rnncap.base.errors import ConfigError
from rnncap.core.halving import Schedule, halving_schedule, ranked
from rnncap.core.population import PopulationModule, PopulationStack
from rnncap.core.run import train

LRS = [0.003, 0.03, 0.01, 0.001, 0.02, 0.05, 0.005, 0.04]
SAMPLES = [32, 24, 16, 30, 20, 28, 12, 26]
HALVING = [
    "model.population=8",
    f"model.members={{lr:{LRS},samples:{SAMPLES}}}".replace(" ", ""),
    "model.halving.eta=2",
    "model.halving.min_steps=5",
    "model.hidden=6",
]


def test_schedule_rungs_and_survivors(make_cfg):
    cfg = make_cfg("model.halving.eta=4", "model.halving.min_steps=500", "trainer.max_steps=32000")
    schedule = halving_schedule(cfg)
    assert schedule == Schedule(4, (500, 2000, 8000, 32000))
    assert [schedule.survivors(n) for n in (64, 16, 4, 1, 3)] == [16, 4, 1, 1, 1]
    # a top rung that is not a power of eta times the first: the last rung is cut to it
    cfg = make_cfg("model.halving.eta=3", "model.halving.min_steps=10", "trainer.max_steps=50")
    assert halving_schedule(cfg).rungs == (10, 30, 50)
    assert halving_schedule(make_cfg()) is None
    assert ranked([1.0, None, 3.0, float("nan"), 3.0], maximize=True) == [2, 4, 0, 1, 3]
    assert ranked([1.0, 0.5], maximize=False) == [1, 0]


def test_halving_keeps_the_best_from_their_state_and_drops_the_rest(
    make_cfg, tmp_path, monkeypatch
):
    """8 members, eta 2, rungs 5, 10, 20: 8 -> 4 -> 2 members. Each survivor equals its solo
    run of 20 steps, each member pruned at a rung its solo run of that rung's steps; pruned
    members leave the vmapped batch; the convergence rows count what was trained."""
    batch_sizes = []
    forward = PopulationStack.forward

    def counted(self, x, which=None):
        batch_sizes.append(len(x))
        return forward(self, x, which)

    monkeypatch.setattr(PopulationStack, "forward", counted)
    cfg = make_cfg(*HALVING)
    train(cfg)
    m = read_metrics(cfg)
    rows = m["members"]
    assert m["halving"] == {"eta": 2, "rungs": [5, 10, 20]}
    assert sorted(r["status"] for r in rows) == ["ok"] * 2 + ["pruned"] * 6
    # training steps: 5 with 8 members, 5 with 4, 10 with 2 (the rest are rung-end scoring)
    trained = list(batch_sizes)
    assert trained.count(8) >= 5 and trained.count(4) >= 5 and trained.count(2) >= 10
    assert max(trained[10:]) <= 4 and max(trained[-10:]) <= 2
    conv = m["convergence"]
    assert [(r["rung"], r["steps"], r["members"]) for r in conv] == [
        (0, 5, 8),
        (1, 10, 4),
        (2, 20, 2),
    ]
    # the survivors of rung 0 are the 4 best by their bits at step 5 (ties by index)
    survivors = [k for k, r in enumerate(rows) if r["status"] == "ok"]
    compute = 5 * sum(SAMPLES)
    assert conv[0]["compute"] == compute
    assert conv[-1]["best_bits"] == max(r["bits"] for r in rows if r["bits"] is not None)
    assert all(a["best_bits"] <= b["best_bits"] for a, b in zip(conv, conv[1:], strict=False))
    assert all(a["compute"] < b["compute"] for a, b in zip(conv, conv[1:], strict=False))
    assert sorted(r["trained_steps"] for r in rows) == [5] * 4 + [10] * 2 + [20] * 2
    assert all(rows[k]["trained_steps"] == 20 for k in survivors)
    pruned_at_10 = next(k for k, r in enumerate(rows) if r["trained_steps"] == 10)
    pruned_at_5 = next(k for k, r in enumerate(rows) if r["trained_steps"] == 5)
    for k in (survivors[0], pruned_at_10, pruned_at_5):
        solo = make_cfg(
            "model.hidden=6",
            f"seed={cfg.seed + k}",
            f"optimizer.lr={LRS[k]}",
            f"task.samples={SAMPLES[k]}",
            f"trainer.max_steps={rows[k]['trained_steps']}",
        )
        solo.output_dir = str(tmp_path / f"solo{k}")
        train(solo)
        expected = read_metrics(solo)
        assert rows[k]["accuracy"] == expected["accuracy"]
        assert rows[k]["bits"] == pytest.approx(expected["bits"], abs=1e-9)
    # who continued: at rung 0 the 4 best of 8 by bits at step 5 (bits of the rung-0 leavers
    # are their final bits; every survivor had at least as many then)
    leavers = [rows[k]["bits"] for k in range(8) if rows[k]["trained_steps"] == 5]
    assert conv[0]["best_bits"] >= max(leavers)


class Interrupt(RuntimeError):
    pass


def test_halving_resumes_mid_rung_without_losing_or_repeating_a_rung(
    make_cfg, tmp_path, monkeypatch
):
    """A job stopped mid-rung (here: an exception at step 13, in rung 1) resumes from the
    checkpoint written at the end of rung 0 and ends as an uninterrupted job does."""
    whole = make_cfg(*HALVING)
    whole.output_dir = str(tmp_path / "whole")
    train(whole)
    cut = make_cfg(*HALVING)
    cut.output_dir = str(tmp_path / "cut")
    step = PopulationModule.training_step

    def stop_at_13(self, batch, idx):
        if self.trainer.global_step == 13:
            raise Interrupt("stopped mid-rung")
        return step(self, batch, idx)

    monkeypatch.setattr(PopulationModule, "training_step", stop_at_13)
    with pytest.raises(Interrupt):
        train(cut)
    assert not (Path(cut.output_dir) / "metrics.json").exists()
    saved = torch.load(Path(cut.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 10 and len(saved["convergence"]["rows"]) == 2
    monkeypatch.setattr(PopulationModule, "training_step", step)
    train(cut)
    assert without_wall(read_metrics(cut)) == without_wall(read_metrics(whole))


@pytest.mark.slow  # two train.py processes, one killed with SIGKILL mid-rung: about 15 s
def test_halving_resumes_after_sigkill(tmp_path):
    overrides = [
        *HALVING[:2],
        "model.halving.eta=4",
        "model.halving.min_steps=25",
        "trainer.max_steps=400",
        "model.hidden=6",
        "task.samples=32",
        "task.input_dim=6",
        "task.steps=3",
        "trainer.checkpoint_every=null",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*cmd, f"hydra.run.dir={whole}"], env=env, check=True, timeout=300)
    proc = subprocess.Popen([*cmd, f"hydra.run.dir={cut}"], env=env)
    checkpoint = cut / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "metrics.json").exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] in (25, 100)  # a rung end, not the top
    subprocess.run([*cmd, f"hydra.run.dir={cut}"], env=env, check=True, timeout=300)
    first = json.loads((whole / "metrics.json").read_text())
    assert without_wall(json.loads((cut / "metrics.json").read_text())) == without_wall(first)


BAD = [
    (["model.halving.eta=1", "model.halving.min_steps=5"], "model.halving.eta=1 must be >= 2"),
    (["model.halving.eta=2", "model.halving.min_steps=50"], "model.halving.min_steps=50 is above"),
    (
        ["model.halving.eta=2", "model.halving.min_steps=5", "model.halving.max_steps=40"],
        "model.halving.max_steps=40 is above trainer.max_steps=20",
    ),
    (
        ["model.halving.eta=2", "model.halving.min_steps=5", "model.members={max_steps:[10,20]}"],
        "model.members.max_steps: successive halving",
    ),
    (["task.batch_size=64"], "task.batch_size=64 exceeds task.samples=32"),
    (
        ["model.members={optimizer:[adam,rmsprop],momentum:[0.9,0.5]}"],
        "model.members.momentum sets optimizer.momentum, which optimizer=adam does not have",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(c[0]) for c in BAD])
def test_impossible_schedules_and_settings_are_one_line(make_cfg, overrides, message):
    cfg = make_cfg("model.hidden=4", "model.population=2", *overrides)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()


@pytest.mark.slow  # a train.py process: 5-15 s of start-up on a loaded machine
def test_bad_schedule_on_the_command_line_exits_2(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "model.population=2", "model.halving.eta=1"]
    cmd += ["model.halving.min_steps=5", f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: model.halving.eta=1 must be")
    assert not (tmp_path / "metrics.json").exists()


def test_solo_capacity_run_records_each_validation_check(make_cfg):
    """trainer.max_steps=25, val_check_interval=10: rows at 10 and 20, and a closing row at
    25 with the final bits; compute = steps x minibatch."""
    cfg = make_cfg("model.hidden=6", "trainer.max_steps=25", "task.batch_size=8")
    train(cfg)
    m = read_metrics(cfg)
    conv = m["convergence"]
    assert [(r["rung"], r["steps"], r["members"]) for r in conv] == [
        (0, 10, 1),
        (1, 20, 1),
        (2, 25, 1),
    ]
    assert [r["compute"] for r in conv] == [80.0, 160.0, 200.0]
    assert conv[-1]["best_bits"] == pytest.approx(max(m["bits"], conv[1]["best_bits"]))
    assert all(r["wall_s"] >= 0 for r in conv)


def test_a_lone_survivor_trains_as_its_solo_run(make_cfg, tmp_path):
    """eta 4 over 4 members: one continues from step 5 to 20, on its own module (the solo
    run's fused kernels, no vmap); it ends where its solo run of 20 steps ends."""
    cfg = make_cfg(
        "model.population=4",
        f"model.members={{lr:{LRS[:4]},samples:{SAMPLES[:4]}}}".replace(" ", ""),
        "model.halving.eta=4",
        "model.halving.min_steps=5",
        "model.hidden=6",
    )
    train(cfg)
    rows = read_metrics(cfg)["members"]
    (k,) = [k for k, r in enumerate(rows) if r["trained_steps"] == 20]
    solo = make_cfg(
        "model.hidden=6", f"seed={cfg.seed + k}", f"optimizer.lr={LRS[k]}",
        f"task.samples={SAMPLES[k]}",
    )  # fmt: skip
    solo.output_dir = str(tmp_path / "solo")
    train(solo)
    expected = read_metrics(solo)
    assert rows[k]["accuracy"] == expected["accuracy"]
    assert rows[k]["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    for key in ("first_loss", "final_loss"):  # at step 0 and at its last step, 19
        assert rows[k][key] == pytest.approx(expected[key], abs=1e-5)


def test_several_optimiser_classes_refuse_scaled_gradients(make_cfg):
    """16-bit mixed precision scales the loss (a GPU run): only Lightning's wrapper of the first
    optimiser unscales, so a population of several classes is refused there."""
    from rnncap.core.population_members import check_population

    cfg = make_cfg("model.population=2", "model.members={optimizer:[adam,sgd]}")
    cfg.hardware.precision = "16-mixed"
    with pytest.raises(ConfigError, match="several optimiser classes in one population need"):
        check_population(cfg)
    cfg.hardware.precision = "bf16-mixed"
    assert len(check_population(cfg)) == 2
