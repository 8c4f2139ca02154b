"""Bad input: one clear line naming the key and what is allowed, a non-zero exit, and no
metrics.json that looks finished."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train import run_cli

from rnncap.config import ConfigError
from rnncap.run import train

CASES = [
    (["depth=0"], "depth=0 is out of range"),
    (["depth=abc"], "depth='abc' must be an integer"),
    (["model.hidden=0"], "model.hidden=0 is out of range"),
    (["model.hidden=8", "model.budget=500"], "model.hidden=8 and model.budget=500 are both set"),
    (["model.budget=null"], "neither model.hidden nor model.budget"),
    (["model.budget=3"], "model.budget=3 is too small"),
    (["optimizer.lr=0"], "optimizer.lr=0 is out of range: must be > 0"),
    (["optimizer.lr=-1e-3"], "optimizer.lr=-0.001 is out of range"),
    (["task.samples=0"], "task.samples=0 is out of range"),
    (["task.samples=100", "task.input_dim=4"], "task.samples=100 exceeds the 2^4"),
    (["cell=intersection", "depth=1"], "cell=intersection needs depth >= 2"),
    (["cell.nonlinearity=sigmoid"], "cell.nonlinearity='sigmoid' is not allowed for cell=rnn"),
    (["cell=intersection", "depth=2", "cell.nonlinearity=relu"], "not allowed for cell=interse"),
    (["cell.recurrent_init=random"], "cell.recurrent_init='random'; choose one of"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 is out of range"),
    (["hardware=gpu"], "hardware=gpu but no CUDA device"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_one_clear_error(make_cfg, overrides, message):
    if overrides == ["hardware=gpu"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cell=foo"], "Could not find 'cell/foo'"),
        (["task=foo"], "Could not find 'task/foo'"),
        (["optimizer=adamw"], "Could not find 'optimizer/adamw'"),
        (["hardware=tpu"], "Could not find 'hardware/tpu'"),
        (["cell.gate_bais=1"], "gate_bais"),
        (["cell=intersection", "depth=1"], "error: cell=intersection needs depth >= 2"),
    ],
)
def test_command_line_refuses_bad_input(tmp_path, args, message):
    proc = run_cli(*args, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
