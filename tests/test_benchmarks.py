"""The tuning benchmark's row builder on a small synthetic study (no training)."""

from __future__ import annotations

import importlib.util
import json
import math
from datetime import datetime
from pathlib import Path
from types import ModuleType

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000.0  # a wall-clock origin (seconds)


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add(
    study: optuna.Study,
    state: TrialState,
    value: float | None,
    start: float,
    end: float,
    **attrs: object,
) -> None:
    trial = create_trial(
        state=state,
        value=value,
        params={"lr": 0.01},
        distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs=attrs,
        intermediate_values={250: 10.0} if state == TrialState.PRUNED else None,
    )
    trial.datetime_start = datetime.fromtimestamp(T0 + start)
    trial.datetime_complete = datetime.fromtimestamp(T0 + end)
    study.add_trial(trial)


def test_tuning_row_counts_rates_and_best(tmp_path: Path) -> None:
    bench = load_bench()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="m", storage=storage, direction="maximize")
    job = str(tmp_path / "job")  # two trials of one population job
    add(study, TrialState.COMPLETE, 1000.0, 10, 20, **{"metrics.params": 500, "run_dir": job})
    add(study, TrialState.COMPLETE, -math.inf, 10, 30, status="diverged", run_dir=job)
    add(study, TrialState.PRUNED, None, 35, 40, status="pruned", run_dir="b")
    (tmp_path / "c").mkdir()  # no metrics.params attribute: read from its metrics.json
    (tmp_path / "c" / "metrics.json").write_text(json.dumps({"params": 500}))
    add(study, TrialState.COMPLETE, 1500.0, 210, 250, run_dir=str(tmp_path / "c"))
    add(study, TrialState.FAIL, None, 260, 270)  # a crash: not a finished trial
    slices = [(T0, T0 + 100), (T0 + 200, T0 + 300)]  # 200 s of budget

    row, curve = bench.tuning_row("pruned", storage, "m", slices)

    assert row["trials"] == 4 and row["wall_s"] == 200.0
    assert row["trials_per_hour"] == pytest.approx(4 / 200 * 3600)
    assert row["best_bits_per_param"] == pytest.approx(1500 / 500)
    assert (row["pruned"], row["diverged"], row["jobs"], row["trials_per_job"]) == (1, 1, 3, 1.33)
    # budget seconds: 20 s into slice 1; 100 s of slice 1 + 50 s into slice 2
    assert curve == [(20.0, 2.0), (150.0, 3.0)]
    ratios = bench.tuning_ratios([row | {"mode": "solo", "trials_per_hour": 18.0}, row])
    assert ratios == {"solo": 1.0, "pruned": 4.0}
