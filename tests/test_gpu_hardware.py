"""On a CUDA device (``pytest -m gpu``): one GPU, bf16-mixed, and DDP on one device agree with
the CPU run of the same config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnncap.core.run import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
SMALL = ("model.hidden=16", "task.samples=64", "task.input_dim=8", "trainer.max_steps=400")


def run(make_cfg, tmp_path, name: str, *overrides: str) -> dict:
    cfg = make_cfg(*SMALL, *overrides)
    cfg.output_dir = str(tmp_path / name)
    train(cfg)
    return json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


@pytest.mark.parametrize(
    "hardware", [["hardware=gpu"], ["hardware=ddp", "hardware.devices=1"]], ids=["gpu", "ddp"]
)
def test_gpu_run_matches_cpu_run(make_cfg, tmp_path, monkeypatch, hardware):
    # cuDNN's RNN kernels (the native rnn/lstm path) use TF32 by default: ~1e-3 off float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cpu = run(make_cfg, tmp_path, "cpu", "hardware=cpu")
    gpu = run(make_cfg, tmp_path, "gpu", *hardware)
    assert gpu["status"] == cpu["status"] == "ok"
    assert gpu["loss"] == pytest.approx(cpu["loss"], rel=1e-3, abs=1e-4)
    assert abs(gpu["accuracy"] - cpu["accuracy"]) <= 2 / 64  # at most two borderline samples


def test_bf16_mixed_memorises(make_cfg, tmp_path):
    m = run(make_cfg, tmp_path, "bf16", "hardware=gpu", "hardware.precision=bf16-mixed")
    assert m["status"] == "ok" and m["accuracy"] > 0.9
