"""The contract of a config option: what every `conf/cell` and `conf/task` option must bring.

A new cell is its module (src/rnncap/cells/<name>.py), its YAML (conf/cell/<name>.yaml) and
its float64 reference (tests/reference.py), plus a sweep space and a display label; a new task
is its module (with its config class) and its YAML. Each check below names the file to add or
fix when something is missing, so `pytest tests/test_contract.py` is the checklist.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CELL_NAMES, CONF, ROOT, TASK_NAMES, cell_class, compose_cfg
from hydra.utils import get_class
from reference import REFERENCES

from rnncap.core.build import build_model, build_task, instantiate_task
from rnncap.core.schema import cell_configs, task_configs

TINY_CAPACITY = ["task.samples=8", "task.input_dim=4", "task.steps=3", "model.hidden=4"]


def module_file(cls: type) -> str:
    return str(Path(inspect.getfile(cls)).relative_to(ROOT))


def raw_yaml(group: str, name: str) -> dict:
    return yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}


# ------------------------------------------------------------------ cells
@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_composes_instantiates_and_runs(name, tmp_path):
    cfg = compose_cfg([f"cell={name}", "depth=2", *TINY_CAPACITY], tmp_path)
    model = build_model(cfg, build_task(cfg))
    out = model(torch.zeros(2, 3, 4))
    assert out.shape == (2, 3, 1), f"cell={name}: readouts of shape {tuple(out.shape)}"


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_has_a_float64_reference(name):
    cls = cell_class(name)
    assert cls.__name__ in REFERENCES, (
        f"cell={name} ({cls.__name__}) has no float64 reference: add a step function decorated "
        f'with @reference("{cls.__name__}", gates=[...]) to tests/reference.py'
    )


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_has_a_sweep_space_of_its_own_keys(name, tmp_path):
    space = CONF / "sweep" / "space" / "cell" / f"{name}.yaml"
    assert space.is_file(), (
        f"cell={name} has no search space: add {space.relative_to(ROOT)} "
        "(`{}` when only the shared keys of conf/sweep/space/common.yaml apply)"
    )
    cell = compose_cfg([f"cell={name}"], tmp_path).cell
    cls = get_class(cell._target_)
    for key, spec in (yaml.safe_load(space.read_text()) or {}).items():
        group, _, leaf = key.partition(".")
        assert group == "cell" and leaf in cell, f"{space.name}: {key} is not a key of cell={name}"
        if leaf == "nonlinearity":
            assert set(spec["choices"]) <= set(cls.allowed_nonlinearities), f"{space.name}: {key}"


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_has_a_display_label(name, cell_configs):
    """Figures show a cell by the ``display`` of its YAML (label, colour, rank), read from the
    composed config that ``rnncap generate cells`` writes."""
    display = yaml.safe_load((cell_configs / f"{name}.yaml").read_text()).get("display") or {}
    assert display.get("label") and str(display.get("color")).startswith("#"), (
        f"cell={name} has no display: add display: {{label: ..., color: '#rrggbb', rank: N}} "
        f"to conf/cell/{name}.yaml"
    )
    assert isinstance(display.get("rank"), int | float), f"conf/cell/{name}.yaml: display.rank"


def test_cells_have_distinct_colours(cell_configs):
    """Figures tell cells apart by colour: no two options share one."""
    colours = {
        name: yaml.safe_load((cell_configs / f"{name}.yaml").read_text())["display"]["color"]
        for name in CELL_NAMES
    }
    colours = {name: colour.lower() for name, colour in colours.items()}
    shared = {c: [n for n in colours if colours[n] == c] for c in set(colours.values())}
    assert not {c: names for c, names in shared.items() if len(names) > 1}


def parent_values(name: str, raw: dict, tmp_path: Path) -> dict:
    """What the option's keys would be without its own lines: the schema's defaults, or the
    composed option it extends (irnn extends rnn)."""
    parents = [d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    if parents and not parents[0].startswith("/"):
        return dict(compose_cfg([f"cell={parents[0]}"], tmp_path).cell)
    schema = cell_configs()[parents[0].removeprefix("/schema/cell/").removesuffix("@_here_")]
    factories = {
        f.name: f.default_factory() for f in fields(schema) if f.default_factory is not MISSING
    }
    return {f.name: f.default for f in fields(schema) if f.default is not MISSING} | factories


@pytest.mark.parametrize("name", CELL_NAMES)
def test_cell_yaml_holds_only_its_differences(name, tmp_path):
    raw = raw_yaml("cell", name)
    parent = parent_values(name, raw, tmp_path)
    for key, value in raw.items():
        if key in ("defaults", "_target_", "name"):
            continue
        assert key in parent, f"conf/cell/{name}.yaml: {key} is not a key of its schema"
        assert value != parent[key], (
            f"conf/cell/{name}.yaml: {key}: {value} repeats the default: delete the line"
        )


# ------------------------------------------------------------------ tasks
@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_composes_and_instantiates(name, tmp_path):
    cfg = compose_cfg([f"task={name}"], tmp_path)
    task = instantiate_task(cfg.task)
    assert isinstance(task.config, task_configs()[name])
    assert task.name == cfg.task.name == name, f"conf/task/{name}.yaml: name"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_config_class_sits_beside_its_module(name):
    configs = task_configs()
    assert name in configs, (
        f"task={name}: add a TaskConfig subclass (a dataclass) to src/rnncap/tasks/{name}.py "
        f"and name it in conf/task/{name}.yaml's defaults as /schema/task/{name}@_here_"
    )
    assert raw_yaml("task", name)["defaults"][0] == f"/schema/task/{name}@_here_"
    target = get_class(configs[name]._target_)
    assert target.__module__ == f"rnncap.tasks.{name}", f"{configs[name].__name__}._target_"


# ------------------------------------------------------------------ experiments
def experiment_names() -> list[str]:
    from rnncap.experiments import discover

    return sorted(discover())


@pytest.mark.parametrize("name", experiment_names())
def test_experiment_has_a_grid_a_test_and_docs(name):
    """A new experiment is its module (src/rnncap/experiments/<name>.py), a grid in params.yaml
    (and params-paper.yaml), its test and its line in the README and docs/pipeline.md."""
    for params in ("params.yaml", "params-paper.yaml"):
        grids = yaml.safe_load((ROOT / params).read_text())["grids"]
        assert any(g.get("experiment") == name for g in grids.values()), (
            f"experiment {name} has no grid: add an entry with `experiment: {name}` under "
            f"`grids` in {params}"
        )
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    imports = re.compile(rf"rnncap\.(analysis|experiments)(\.| import ){name}\b")
    assert any(name in t.stem or imports.search(t.read_text()) for t in tests), (
        f"experiment {name} has no test: add tests/test_{name}.py"
    )
    for doc in ("README.md", "docs/pipeline.md"):
        assert f"experiments/{name}.py" in (ROOT / doc).read_text(), (
            f"experiment {name}: {doc} does not list experiments/{name}.py"
        )
