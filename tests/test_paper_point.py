"""benchmarks/gpu_paper_point.py: the point's convergence curve from its jobs (a hand-made
case), and the whole command at a tiny size on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import ROOT, load_benchmark


def load_point() -> ModuleType:
    return load_benchmark("gpu_paper_point")


def row(rung: int, compute: float, wall: float, best: float | None) -> dict:
    return {"rung": rung, "steps": 10 * (rung + 1), "members": 1, "compute": compute,
            "wall_s": wall, "best_bits": best}  # fmt: skip


def test_jobs_concatenate_into_one_curve_with_their_rungs():
    point = load_point()
    jobs = [
        {"status": "ok", "convergence": [row(0, 100.0, 1.0, 5.0), row(1, 300.0, 2.0, 20.0)]},
        {"status": "pruned", "convergence": [row(0, 100.0, 1.5, None), row(1, 500.0, 4.0, 12.0)]},
    ]
    curve = point.point_rows(jobs)
    assert [r["compute"] for r in curve] == [100.0, 300.0, 400.0, 800.0]
    assert [r["wall_s"] for r in curve] == [1.0, 2.0, 3.5, 6.0]
    assert [r["best_bits"] for r in curve] == [5.0, 20.0, 20.0, 20.0]  # a running maximum
    assert [(r["rung"], r["steps"]) for r in curve] == [(0, 10), (1, 20), (0, 10), (1, 20)]


def test_tiny_paper_point_runs_on_the_cpu(tmp_path):
    """The GPU script at its tiny size on the CPU (a default test, so that a lent device is
    spent measuring): a 16-trial sweep in 2 populations with successive halving, 20-45 s."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_paper_point.py"), "--tiny"]
    cmd += ["--device", "cpu", "--no-throughput", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "paper_point.json").read_text())
    assert result["settings"] == 16 and result["jobs"] == 2 and result["rungs"] == [10, 20, 40]
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/metrics.json")]
    best = max(m["bits"] for job in jobs for m in job["members"] if m["bits"] is not None)
    assert result["bits"] == pytest.approx(best)  # final weights, as the capacity table
    assert result["best_evaluated_bits"] >= best - 1e-9  # the curve's running maximum
    assert result["bits_per_param"] == pytest.approx(best / result["params"])
    assert [r["members"] for r in result["curve"]] == [8, 4, 2, 8, 4, 2]
    assert f"bits/param {best / result['params']:.3f}" in out.stdout
