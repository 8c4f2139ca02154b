"""A run's output: its own lines and real warnings, no library banners (rnncap.core.quiet)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest
from conftest import ROOT
from test_train import cli_env

from rnncap.core.quiet import BANNER_LOGGERS, quiet_libraries

BANNERS = ["GPU available", "TPU available", "litlogger", "LeafSpec", "`Trainer.fit` stopped"]
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`"


def test_a_run_prints_its_lines_and_warnings_but_no_banners(tmp_path):
    # logger.offline=false without an API key: rnncap warns that it logs offline instead
    env = {k: v for k, v in cli_env().items() if k != "WANDB_API_KEY"}
    env["NETRC"] = str(tmp_path / "no-netrc")
    tiny = [
        "task.samples=16",
        "task.input_dim=5",
        "trainer.max_steps=5",
        "trainer.val_check_interval=5",
    ]
    tiny += ["trainer.checkpoint_every=null", "trainer.enable_progress_bar=false"]
    cmd = [sys.executable, str(ROOT / "train.py"), *tiny, "logger=wandb", "logger.offline=false"]
    cmd.append("hydra.run.dir=run")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert [banner for banner in BANNERS if banner in out] == []
    assert "no W&B API key is set: logging offline instead" in out
    assert "rnncap.core.run][INFO] - results: {" in out


@pytest.fixture
def restore_banner_levels():
    levels = {name: logging.getLogger(name).level for name in BANNER_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("message", "category", "module", "shown"),
    [
        (LEAFSPEC, FutureWarning, "pytorch_lightning.utilities._pytree", False),
        (LEAFSPEC, FutureWarning, "rnncap.core.run", True),  # our own use would show
        ("`x` is deprecated", FutureWarning, "pytorch_lightning.utilities._pytree", True),
        ("Checkpoint directory /r/checkpoints exists and is not empty.", UserWarning, "pl", False),
        ("The 'train_dataloader' does not have many workers", UserWarning, "pl", True),
    ],
)
def test_only_the_named_warnings_are_filtered(
    restore_banner_levels, message, category, module, shown
):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn_explicit(message, category, "lib.py", 1, module=module)
    assert len(caught) == shown
    assert all(not logging.getLogger(name).isEnabledFor(logging.INFO) for name in BANNER_LOGGERS)
    assert all(logging.getLogger(name).isEnabledFor(logging.WARNING) for name in BANNER_LOGGERS)
