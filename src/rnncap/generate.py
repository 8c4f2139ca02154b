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

from omegaconf import DictConfig, OmegaConf

from rnncap.core.build import compose_run_config, instantiate_task
from rnncap.core.resolvers import register_resolvers
from rnncap.core.schema import register_configs
from rnncap.core.validate import validate
from rnncap.tasks.base import TaskDataModule

register_resolvers()  # this module composes configs as train.py does
register_configs()


def task_without_data_file(cfg: DictConfig) -> TaskDataModule:
    """The configured task, without a data file (this is where its data comes from)."""
    return instantiate_task(cfg.task, **({"data_file": None} if "data_file" in cfg.task else {}))


def generate(out: Path, overrides: list[str], config_dir: Path = Path("conf")) -> dict:
    """Validate the composed config, generate the task's sets and save them to ``out``."""
    cfg = compose_run_config(overrides, config_dir)
    validate(cfg)
    task = task_without_data_file(cfg)
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
