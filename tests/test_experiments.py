"""Every named experiment composes, its values win over the defaults, and it runs (shrunk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import CONF, compose_cfg
from omegaconf import OmegaConf

from rnncap.core.run import train

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_overrides_the_defaults(name, tmp_path):
    cfg = compose_cfg([f"experiment={name}"], tmp_path)
    written = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
    written.pop("defaults", None)
    for key, value in leaves(written).items():
        assert OmegaConf.select(cfg, key) == value, key


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_when_shrunk(name, tmp_path):
    shrink = [
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.checkpoint_every=null",
    ]
    cfg = compose_cfg([f"experiment={name}", *shrink], tmp_path)
    if cfg.task.name == "memory":  # shrink the data too
        cfg.task.samples, cfg.task.eval_samples, cfg.task.mc_samples = 64, 32, 64
    train(cfg)
    metrics = json.loads((Path(tmp_path) / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["task"] == cfg.task.name
