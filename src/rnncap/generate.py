"""Materialise what the pipeline's training runs read, as files DVC can track.

    rnncap generate data data/capacity/b400-s0.pt task=capacity task.samples=400 seed=0
    rnncap generate cells results/configs/cell

``data``: a task's generated sets, loaded by training with ``task.data_file=<file>``. The
overrides are those of ``python train.py``: the config is composed the same way, so the file
holds exactly the sets that a run with the same task settings generates from ``task.seed``. The
file records those settings, and a run whose settings differ refuses to load it.

``cells``: each cell option's config as composed (``defaults`` included: IRNN's config is the
RNN's plus its differences), one YAML file per cell. A training stage depends on its cell's file,
so editing one cell's config reruns only the stages of the cells it changes.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from rnncap.core.validate import validate
from rnncap.tasks.base import TaskDataModule


def compose_run_config(overrides: list[str], config_dir: Path) -> DictConfig:
    """The training config that ``python train.py <overrides>`` composes (outside a run dir)."""
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = "."  # no run dir: resolves ${hydra:runtime.output_dir} away
    return cfg


def build_task(cfg: DictConfig) -> TaskDataModule:
    """The configured task, without a data file (this is where its data comes from)."""
    kwargs = OmegaConf.to_container(cfg.task, resolve=True)
    kwargs.pop("name", None)
    if "data_file" in kwargs:
        kwargs["data_file"] = None
    return instantiate(kwargs)


def generate(out: Path, overrides: list[str], config_dir: Path = Path("conf")) -> dict:
    """Validate the composed config, generate the task's sets and save them to ``out``."""
    cfg = compose_run_config(overrides, config_dir)
    validate(cfg)
    task = build_task(cfg)
    task.save_data(out)
    return task.data_key()


def write_cell_configs(out: Path, config_dir: Path = Path("conf")) -> list[Path]:
    """Write ``<out>/<cell>.yaml``, the composed config of every cell option in conf/cell."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for option in sorted((config_dir / "cell").glob("*.yaml")):
        cfg = compose_run_config([f"cell={option.stem}"], config_dir)
        paths.append(out / option.name)
        paths[-1].write_text(OmegaConf.to_yaml(cfg.cell, resolve=True))
    return paths
