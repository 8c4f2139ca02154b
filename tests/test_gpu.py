"""CUDA checks (``-m gpu``): the cuDNN native path computes the step loop's function, and a
population member equals its solo run on the GPU."""

from __future__ import annotations

import pytest
import torch
from test_cells import NATIVE, randomised
from test_population import LRS, MEMBERS, SAMPLES, SEEDS, read_metrics, record_losses  # noqa: F401

from rnncap.cells import GRUCell, IntersectionCell, UGRNNCell
from rnncap.core.run import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(("cls", "nonlinearity"), NATIVE)
def test_cudnn_native_path_equals_step_loop(cls, nonlinearity):
    x = torch.randn(7, 5, 5, dtype=torch.float64, device="cuda")
    outs, grads = [], []
    for native in (True, False):
        cell = randomised(cls, nonlinearity).cuda()
        cell.use_native = native
        y = cell(x)
        y.sin().sum().backward()
        outs.append(y)
        grads.append([p.grad for p in cell.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_population_member_equals_solo_on_gpu(
    make_cfg,
    tmp_path,
    record_losses,  # noqa: F811
    monkeypatch,
    cell,
):
    # cuDNN's RNN kernels (the solo rnn/lstm path) use TF32 by default: ~1e-3 off float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    common = [f"cell={cell}", "hardware=gpu", "model.hidden=6"]
    cfg = make_cfg(*common, "model.population=3", MEMBERS)
    train(cfg)
    steps = torch.tensor(record_losses["population"])
    for k, (seed, lr, samples) in enumerate(zip(SEEDS, LRS, SAMPLES, strict=True)):
        record_losses["solo"].clear()
        solo_cfg = make_cfg(*common, f"seed={seed}", f"optimizer.lr={lr}")
        solo_cfg.task.samples, solo_cfg.output_dir = samples, str(tmp_path / f"solo{k}")
        train(solo_cfg)
        torch.testing.assert_close(
            steps[:, k], torch.tensor(record_losses["solo"]), rtol=0, atol=1e-5
        )
    assert read_metrics(cfg)["members"][0]["status"] == "ok"


@pytest.mark.parametrize("cls", [GRUCell, UGRNNCell, IntersectionCell])
def test_graphed_layer_equals_eager_over_training_steps(cls):
    """cell.compile=graphed: CUDA graphs of the compiled layer give the eager loop's outputs and
    gradients, also after optimiser steps have changed the weights in place (float64)."""
    x = torch.randn(6, 4, 5, dtype=torch.float64, device="cuda")
    runs = []
    for mode in (False, "graphed"):
        torch.manual_seed(0)
        cell = cls(5, 5, gate_bias=0.7).double().cuda()
        cell.compile_step = mode
        optimizer = torch.optim.SGD(cell.parameters(), lr=0.1)
        outs = []
        for _ in range(3):
            optimizer.zero_grad()
            y = cell(x)
            y.sin().sum().backward()
            outs.append(y.detach().clone())
            optimizer.step()
        runs.append((outs, [p.detach().clone() for p in cell.parameters()]))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
