"""Tuned studies as runs (rnncap.analysis.studies) on a synthetic study recorded by the
sweeper's own ``tell``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.rnncap_optuna import _trials as sweep_trials
from rnncap.analysis.studies import study_runs, trial_row


def record(study: optuna.Study, run_dir: Path, metrics: dict | None, value) -> None:
    """One trial told through the sweeper, with ``metrics`` as its run's metrics.json."""
    run_dir.mkdir(parents=True)
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
    job = JobReturn(hydra_cfg=cfg, status=JobStatus.COMPLETED)
    job.return_value = value
    if isinstance(value, Exception):
        job.status = JobStatus.FAILED
    sweep_trials.tell(study, [study.ask()], job, "bits")


def run(bits: float | None, samples: int, status: str = "ok") -> dict:
    base = {"cell": "rnn", "task": "capacity", "depth": 1, "hidden": 3, "params": 40}
    return {**base, "status": status, "samples": samples, "bits": bits}


@pytest.fixture
def storage(tmp_path):
    url = f"sqlite:///{tmp_path}/studies.db"
    cap = optuna.create_study(study_name="cap", storage=url, direction="maximize")
    cap.set_user_attr("task", "capacity")
    record(cap, tmp_path / "0", run(100.0, 200), 100.0)
    record(cap, tmp_path / "1", run(None, 400, "diverged"), None)
    record(cap, tmp_path / "2", run(180.5, 300), 180.5)
    record(cap, tmp_path / "3", None, RuntimeError("crash"))  # FAIL: no row
    par = optuna.create_study(study_name="par", storage=url, direction="minimize")
    par.set_user_attr("task", "parentheses")
    record(par, tmp_path / "p0", {"task": "parentheses", "status": "ok", "loss": 0.5}, 0.5)
    return url


def test_study_trials_become_metrics_rows(storage):
    rows = study_runs([storage], task="capacity")
    assert [r["run"] for r in rows] == ["cap#0", "cap#1", "cap#2"]
    assert [r["bits"] for r in rows] == [100.0, None, 180.5]
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok"]
    assert rows[2] == {**run(180.5, 300), "run": "cap#2"}
    everything = study_runs([storage])
    assert len(everything) == 4 and everything[-1]["run"] == "par#0"


def test_trial_without_metrics_is_no_row():
    assert trial_row("s", 0, {"run_dir": "x"}) is None
    assert trial_row("s", 1, {"status": "ok", "metrics.bits": 3.0}) == {
        "bits": 3.0,
        "status": "ok",
        "run": "s#1",
    }


def test_capacity_fit_takes_maxima_from_runs_and_studies(storage, tmp_path):
    from rnncap.analysis.capacity import analyse
    from rnncap.cli import main

    runs = tmp_path / "runs"
    for name, bits, params in [("a", 150.0, 40), ("b", 300.0, 80)]:  # one size also tuned
        (runs / name).mkdir(parents=True)
        metrics = {**run(bits, 1000), "params": params, "hidden": params // 10 - 1}
        (runs / name / "metrics.json").write_text(json.dumps(metrics))
    plain = analyse(runs, tmp_path / "o1", tmp_path / "m1.json", boot=20)
    assert [r["capacity"] for r in plain["table"]] == [150.0, 300.0]
    tuned = analyse(runs, tmp_path / "o2", tmp_path / "m2.json", boot=20, studies=[storage])
    small, large = tuned["table"]
    # the tuned trial (180.5 bits at b = 300) beats the plain run; the diverged trial counts
    assert (small["capacity"], small["best_samples"]) == (180.5, 300)
    assert (small["runs"], small["diverged"]) == (4, 1)
    assert small["bits_per_param"] == pytest.approx(180.5 / 40)
    assert large["capacity"] == 300.0 and large["runs"] == 1
    out = tmp_path / "o3"
    argv = ["--runs", str(runs), "--out", str(out), "--metrics", str(tmp_path / "m3.json")]
    main(["fit", *argv, "--boot", "20", "--wandb", "disabled", "--studies", storage])
    assert "180.5" in (out / "capacity.csv").read_text()
