"""The capacity_scaling grid (params.yaml): the capacity protocol for the tanh RNN and the GRU
at three sizes, no memory part. Marked slow: a tiny version trained and analysed end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from conftest import ROOT

RNNCAP = Path(sys.executable).parent / "rnncap"


def rnncap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([str(RNNCAP), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


@pytest.mark.slow  # 4 points x a population of 4 with successive halving: about a minute
def test_tiny_capacity_scaling_trains_then_reports_every_size(tmp_path):
    for name in ("train.py", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["jobs"] = 1
    grid = params["grids"]["capacity_scaling"]
    grid["budgets"] = [100, 200]  # one unit needs 69 parameters at input_dim 20
    grid["search"] |= {"trials": 4, "population": 4, "val_check_interval": 20, "max_steps": 20}
    grid["search"]["halving"] = {"eta": 2, "min_steps": 10}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = rnncap("train-grid", "capacity_scaling", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "results" / "capacity_scaling" / "runs"
    jobs = [json.loads(p.read_text()) for p in runs.rglob("metrics.json")]
    assert sorted((j["cell"], j["params"] <= 100) for j in jobs) == [
        ("gru", False), ("gru", True), ("rnn", False), ("rnn", True)
    ]  # fmt: skip
    assert all(m["nonlinearity"] == "tanh" for j in jobs for m in j["members"])
    assert all(j["halving"]["rungs"] == [10, 20] for j in jobs)
    assert not (runs / "memory").exists()
    proc = rnncap("analyse", "capacity_scaling", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / "results" / "capacity_scaling" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["capacity"]) == {"rnn", "gru"}
    for cell in ("rnn", "gru"):
        assert summary["capacity"][cell]["depth1"]["sizes"] == 2  # an interval over sizes
    for figure in ("capacity_vs_params.png", "bits_per_param.png", "convergence.png"):
        assert matplotlib.image.imread(report / figure).shape[2] in (3, 4)
