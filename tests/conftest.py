"""Shared fixtures: the real Hydra config, composed once and shrunk for fast CPU tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

import rnncap  # noqa: F401  (registers the config resolvers and schemas)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# the options are discovered from conf/: a new cell or task is tested without editing tests
CELL_NAMES = sorted(p.stem for p in (CONF / "cell").glob("*.yaml"))
TASK_NAMES = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def compose_cfg(overrides: list[str], output_dir: Path) -> DictConfig:
    """The training config as ``python train.py <overrides>`` composes it, run in output_dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


def cell_class(name: str) -> type:
    """The class that ``cell=<name>`` instantiates."""
    return get_class(compose_cfg([f"cell={name}"], Path(".")).cell._target_)


# every cell class once, in the order of the options that name it
CELL_CLASSES = list(dict.fromkeys(cell_class(name) for name in CELL_NAMES))


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) shrunk to a tiny problem, writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        tiny = [
            "task.samples=32",
            "task.input_dim=6",
            "task.steps=3",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.checkpoint_every=null",
        ]
        return compose_cfg([*tiny, *overrides], tmp_path)

    return make
