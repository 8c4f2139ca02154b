"""The DVC pipeline: data files, cell configs, the grid in dvc.yaml and its dependencies, the
paper-scale experiment, figures, W&B, `dvc repro` and `dvc status`."""

from __future__ import annotations

import ast
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml
from conftest import CELL_NAMES, ROOT, compose_cfg
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_analysis import capacity_run, memory_run, synthetic_grid, write_runs
from test_train import cli_env

from rnncap.analysis.capacity import analyse
from rnncap.analysis.plots import capacity_figure, plot_all
from rnncap.base.errors import ConfigError
from rnncap.cli import param_overrides
from rnncap.core.run import train
from rnncap.generate import generate, write_cell_configs
from rnncap.tasks.capacity import CapacityTask
from rnncap.train_grid import grid_commands

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNNCAP = [sys.executable, "-m", "rnncap.cli"]  # the `rnncap` command of the pipeline's stages


def test_generated_file_holds_the_sets_the_task_generates(tmp_path):
    out = tmp_path / "d.pt"
    key = generate(out, ["task.samples=40", "task.input_dim=7", "task.steps=3", "seed=5"])
    assert key == {"task": "capacity", "samples": 40, "input_dim": 7, "steps": 3, "seed": 5}
    loaded = CapacityTask.with_keys(samples=40, input_dim=7, steps=3, seed=5, data_file=str(out))
    fresh = CapacityTask.with_keys(samples=40, input_dim=7, steps=3, seed=5)
    loaded.setup()
    fresh.setup()
    for a, b in zip(loaded.train_set.tensors, fresh.train_set.tensors, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(loaded.eval_set.tensors[1], fresh.eval_set.tensors[1])


def test_a_data_file_from_other_settings_or_missing_is_refused(tmp_path):
    out = tmp_path / "d.pt"
    generate(out, ["task.samples=40", "task.input_dim=7", "seed=5"])
    with pytest.raises(ConfigError, match="task.data_file=.*seed': 6"):
        CapacityTask.with_keys(samples=40, input_dim=7, seed=6, data_file=str(out)).setup()
    with pytest.raises(ConfigError, match="task.data_file=.*does not exist"):
        CapacityTask.with_keys(data_file=str(tmp_path / "nope.pt")).setup()


def test_generate_refuses_bad_config_with_exit_2(tmp_path):
    cmd = [*RNNCAP, "generate", "data", str(tmp_path / "x.pt")]
    proc = subprocess.run(
        [*cmd, "task.samples=100", "task.input_dim=4"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: task.samples=100 exceeds")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()


def test_run_with_data_file_matches_run_that_generates(make_cfg, tmp_path):
    data = tmp_path / "data.pt"
    generate(data, ["task.samples=32", "task.input_dim=6", "task.steps=3", "seed=2"])
    results = []
    for sub, extra in [("gen", []), ("file", [f"task.data_file={data}"])]:
        cfg = make_cfg("seed=2", "model.hidden=4", *extra)
        cfg.output_dir = str(tmp_path / sub)
        train(cfg)
        results.append(json.loads((tmp_path / sub / "metrics.json").read_text()))
    assert results[0] == results[1]


def test_memory_run_with_data_file_matches_run_that_generates(tmp_path):
    task = ["task=memory", "task.input_dim=4", "task.samples=64", "task.eval_samples=32"]
    task += ["task.mc_delays=0", "seed=1"]
    data = tmp_path / "memory.pt"
    generate(data, task)
    results = []
    for sub, extra in [("gen", []), ("file", [f"task.data_file={data}"])]:
        train_args = ["model.hidden=3", "trainer.max_steps=20", "trainer.val_check_interval=10"]
        cfg = compose_cfg([*task, *train_args, "trainer.checkpoint_every=null", *extra], tmp_path)
        cfg.output_dir = str(tmp_path / sub)
        train(cfg)
        results.append(json.loads((tmp_path / sub / "metrics.json").read_text()))
    assert results[0] == results[1] and math.isfinite(results[1]["r2"])
    assert results[1]["r2"] == pytest.approx(1 - results[1]["mse"], abs=0.1)


def test_cell_configs_are_composed_with_their_defaults(tmp_path):
    paths = write_cell_configs(tmp_path, ROOT / "conf")
    assert sorted(p.stem for p in paths) == CELL_NAMES  # every option in conf/cell
    irnn = yaml.safe_load((tmp_path / "irnn.yaml").read_text())
    rnn = yaml.safe_load((tmp_path / "rnn.yaml").read_text())
    assert irnn["_target_"] == rnn["_target_"] and irnn["nonlinearity"] == "relu"
    assert irnn.keys() == rnn.keys()  # the RNN's keys come through IRNN's `defaults`


def dvc_stages(root: Path) -> dict:
    """Stage name -> resolved stage definition, as DVC expands dvc.yaml with params.yaml."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def test_dvc_yaml_runs_each_grid_of_params_yaml_as_one_multirun():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = dvc_stages(ROOT)
    grids = {"train_capacity", "train_memory", "train_distance", "train_counting"}
    beyond = {"train_capacity_beyond", "train_memory_beyond"}  # the named extra target's
    assert {n for n in stages if n.startswith("train_")} == grids | beyond | {"train_precision"}
    assert stages["train_capacity"].cmd == "rnncap train-grid capacity"
    (capacity,) = grid_commands(ROOT / "params.yaml", "capacity")
    grid = params["capacity"]
    assert f"cell={','.join(grid['cells'])}" in capacity
    assert f"model.budget={','.join(map(str, grid['budgets']))}" in capacity
    assert "hydra.sweeper.grid=[cell,depth,model.budget,seed]" in capacity
    assert f"hydra.sweeper.population={grid['search']['population']}" in capacity
    assert f"hydra.sweeper.sampler.seed={grid['search']['seed']}" in capacity  # reruns repeat
    assert f"hydra.launcher.n_jobs={params['jobs']}" in capacity
    memory, deep = grid_commands(ROOT / "params.yaml", "memory")
    assert f"cell={','.join(params['memory']['cells'])}" in memory
    assert "cell=intersection" in deep and "depth=2" in deep
    assert "task.data_file=data/memory/s${seed}.pt" in memory
    deps = {str(Path(d.def_path)) for d in stages["train_memory"].deps}
    assert {"data/memory", "results/configs/cell"} <= deps


def test_beyond_grids_are_the_default_grids_for_the_new_cells(monkeypatch, capsys):
    """`rnncap train-grid capacity_beyond|memory_beyond --dry-run`: the default grids' command
    lines with the new cells, writing under results/beyond/train/; plot_beyond is its own
    target, and `dvc repro plot` does not reach it."""
    from rnncap.cli import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(ROOT)
    main(["train-grid", "capacity_beyond", "--dry-run"])
    main(["train-grid", "memory_beyond", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("run: python train.py -m ") for line in lines)
    capacity, memory = (line.split() for line in lines)
    grid = params["capacity_beyond"]
    assert f"cell={','.join(grid['cells'])}" in capacity and "sweep=quick" in capacity
    assert "hydra.sweep.dir=results/beyond/train/capacity" in capacity
    assert "hydra.sweeper.storage=journal:///results/beyond/train/capacity/studies.log" in capacity
    default = grid_commands(ROOT / "params.yaml", "capacity")[0]
    own = ("cell=", "hydra.sweep.dir=", "hydra.sweeper.storage=")  # what differs by design
    assert [a for a in capacity[3:] if not a.startswith(own)] == [
        a for a in default if not a.startswith(own)
    ]
    assert params["memory_beyond"]["task"] == params["memory"]["task"]  # the same data files
    assert f"cell={','.join(params['memory_beyond']['cells'])}" in memory
    assert "hydra.sweep.dir=results/beyond/train/memory" in memory
    assert "task.data_file=data/memory/s${seed}.pt" in memory
    stages = dvc_stages(ROOT)
    assert "--runs results/beyond/train" in stages["fit_beyond"].cmd
    assert "--out results/beyond/figures" in stages["plot_beyond"].cmd

    def feeds(stage, deps: set[str]) -> bool:  # an output that is a dep, inside or above one
        outs = {str(Path(o.def_path)) for o in stage.outs}
        return any(
            o == d or o.startswith(f"{d}/") or d.startswith(f"{o}/") for o in outs for d in deps
        )

    upstream = {"plot"}  # what `dvc repro plot` runs: plot and every stage its deps come from
    while True:
        deps = {str(Path(d.def_path)) for n in upstream for d in stages[n].deps}
        more = {n for n, stage in stages.items() if feeds(stage, deps)}
        if more <= upstream:
            break
        upstream |= more
    assert {"train_capacity", "train_memory", "fit", "cell_configs"} <= upstream
    assert not any("beyond" in n for n in upstream)


def test_a_grid_section_takes_its_kind_from_its_name_or_kind_key(tmp_path, monkeypatch, capsys):
    from rnncap.cli import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    extra = {"jobs": 1, "wide": {**params["memory"], "kind": "memory"}, "tune": params["tune"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(extra))
    (memory, deep) = grid_commands(tmp_path / "p.yaml", "wide")
    assert "hydra.sweep.dir=results/wide/train/memory" in memory and "depth=2" in deep
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_status:
        main(["train-grid", "tune", "--params", str(tmp_path / "p.yaml"), "--dry-run"])
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and err.count("\n") == 1
    assert "tune: section `tune` is no training grid: name it capacity_* or memory_*" in err


def dep_paths(stage) -> set[str]:
    return {str(Path(d.def_path)) for d in stage.deps}


def source_modules() -> dict[str, Path]:
    """Module name -> file, for train.py and every module under src/."""
    modules = {"train": ROOT / "train.py"}
    for path in (ROOT / "src").rglob("*.py"):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_files(*roots: str) -> set[str]:
    """The project files (relative to ROOT) that importing ``roots`` can load: every import
    statement, at any depth (lazy imports too), with the packages above each module; of
    rnncap.cli only its top-level imports (each subcommand's own are among the roots)."""
    modules, seen, todo = source_modules(), set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo += [name.rsplit(".", 1)[0]] if "." in name else []  # its package's __init__
        source = modules[name].read_text()
        tree = ast.parse(source)
        if "pkgutil.iter_modules" in source:  # it imports every module of the packages it names
            packages = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
            todo += [m for m in modules if m.rsplit(".", 1)[0] in packages]
        for node in tree.body if name == "rnncap.cli" else ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return {str(modules[m].relative_to(ROOT)) for m in seen}


def covered(files: set[str], deps: set[str]) -> set[str]:
    """The files no dependency (a file or a folder above it) covers."""
    return {f for f in files if not any(f == d or f.startswith(d + "/") for d in deps)}


def test_stages_call_rnncap_or_train_py_and_depend_on_all_they_import():
    stages = dvc_stages(ROOT)
    for name, stage in stages.items():
        assert stage.cmd.startswith(("rnncap ", "python train.py ")), (name, stage.cmd)
        assert "python -m" not in stage.cmd
    tasks = ("rnncap.tasks.capacity", "rnncap.tasks.memory")  # instantiated from the config
    extra = ("rnncap.tasks.distance", "rnncap.tasks.counting")
    training = imported_files("train", *tasks)
    analysis = imported_files("rnncap.cli", *(f"rnncap.analysis.{m}" for m in ANALYSIS))
    generating = imported_files("rnncap.cli", "rnncap.generate", *tasks)
    sweeper = {  # Hydra loads its plugins at every start
        str(p.relative_to(ROOT)) for p in (ROOT / "src/hydra_plugins").rglob("*.py")
    }
    tune = imported_files("train", "rnncap.cli", "rnncap.tune_grid") | sweeper
    grids = training | imported_files("rnncap.cli", "rnncap.train_grid")  # rnncap train-grid
    for name, files in [
        ("train_capacity", grids | sweeper),
        ("train_memory", grids),
        ("train_distance", grids | imported_files(*extra) | sweeper),
        ("train_counting", grids | imported_files(*extra) | sweeper),
        ("distance", analysis),
        ("counting", analysis),
        ("cell_configs", generating),
        ("fit", analysis),
        ("plot", analysis),
        ("tune", tune | training),
        ("trainability", analysis),
        ("train_precision", grids | sweeper),
        ("precision", analysis),
        ("train_capacity_beyond", grids | sweeper),
        ("train_memory_beyond", grids),
        ("fit_beyond", analysis),
        ("plot_beyond", analysis),
    ]:
        assert not covered(files, dep_paths(stages[name])), name
    train_deps = dep_paths(stages["train_capacity"])
    assert {
        "src/rnncap/core",
        "src/rnncap/cells",
        "src/rnncap/tasks",
        "conf/hardware",
    } <= train_deps
    assert {"conf/cell", "src/rnncap/core"} <= dep_paths(stages["fit"])  # the cells' display
    tune_deps = dep_paths(stages["tune"])
    assert {"conf/hardware", "conf/logger", "conf/sweep", "conf/cell", "conf/task"} <= tune_deps


ANALYSIS = ["capacity", "plots", "tables", "tracking", "trainability", "studies", "distance",
            "counting", "output", "task_runs", "rescore"]  # fmt: skip


def test_distance_and_counting_are_named_extra_targets_outside_the_default_run():
    """`make run` (`dvc repro plot`) never trains or analyses them; their own targets run their
    own grid, with their own params sections."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        plot = next(s for s in graph if s.addressing == "plot")
        upstream = {s.addressing for s in nx.dfs_postorder_nodes(graph, plot)}
    assert {"fit", "train_capacity", "train_memory"} <= upstream
    extras = {"train_distance", "distance", "train_counting", "counting"}
    assert not upstream & (extras | {"train_precision", "precision"})
    stages = dvc_stages(ROOT)
    for grid in ("distance", "counting"):
        assert stages[f"train_{grid}"].cmd == f"rnncap train-grid {grid}"
        assert f"results/runs/{grid}" in dep_paths(stages[grid])
        assert f"conf/task/{grid}.yaml" in dep_paths(stages[f"train_{grid}"])
        params = {k for p in stages[f"train_{grid}"].params for k in p.params}
        assert params == {"jobs", grid}
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    assert {"results/distance/max_distance.png", "results/counting/long_accuracy.png"} <= {
        p for p in plots if isinstance(p, str)
    }


def test_paper_params_have_the_same_keys_as_the_default():
    def keys(node, prefix=""):
        if not isinstance(node, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}.{k}") for k, v in node.items()))

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "params-paper.yaml").read_text())
    assert keys(paper) == keys(default)
    assert paper["capacity"]["depths"] == [1, 2, 4, 8]
    assert max(paper["capacity"]["budgets"]) >= 100_000
    search = [f"sweep={paper['capacity']['search']['sweep']}"]
    search.append(f"model.budget={max(paper['capacity']['budgets'])}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        space = compose("train", overrides=search, return_hydra_config=True).hydra.sweeper.params
    samples = OmegaConf.to_container(space, resolve=True)["task.samples"]["high"]
    assert samples <= 2 ** paper["capacity"]["task"]["input_dim"]  # distinct inputs exist


def test_the_paper_grid_runs_as_a_dvc_experiment_of_its_differences(tmp_path):
    """`rnncap exp-params params-paper.yaml | xargs dvc exp run` passes --set-param overrides;
    applied the way `dvc exp run` applies them, they turn params.yaml into params-paper.yaml."""
    from dvc.utils.hydra import apply_overrides

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "params-paper.yaml").read_text())
    proc = subprocess.run([*RNNCAP, "exp-params", "params-paper.yaml"], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    args = [shlex.split(line)[0] for line in proc.stdout.splitlines()]  # as xargs reads them
    assert args and all(a.startswith("--set-param=") for a in args)
    assert [a.removeprefix("--set-param=") for a in args] == param_overrides(paper, default)
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, [a.removeprefix("--set-param=") for a in args])
    assert yaml.safe_load(params.read_text()) == paper


def synthetic_tables(tmp_path: Path, memory: bool = True) -> Path:
    import numpy as np

    runs = synthetic_grid({"rnn": 5.0, "gru": 4.0, "intersection": 3.5}, np.random.default_rng(0))
    if memory:
        runs += [memory_run(c, n, max(0.0, (64 - n) / 64) + 0.02) for c in ("rnn", "gru")
                 for n in (8, 32, 64, 96)]  # fmt: skip
    write_runs(tmp_path / "runs", runs)
    analyse(tmp_path / "runs", tmp_path / "tables", tmp_path / "metrics.json", boot=100)
    return tmp_path / "tables"


@pytest.mark.parametrize("memory", [True, False])
def test_plot_stage_writes_png_figures(tmp_path, memory):
    paths = plot_all(synthetic_tables(tmp_path, memory), tmp_path / "figures")
    assert [p.name for p in paths] == [
        "capacity_vs_params.png",
        "bits_per_param.png",
        "convergence.png",
        "memory_per_unit.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = matplotlib.image.imread(path).shape
        assert width > 500 and height > 400


def test_capacity_figure_has_a_panel_per_depth_and_a_line_per_cell(cell_configs):
    rows = [
        {**capacity_run(c, d, p, 4.0 * p), "capacity": 4.0 * p}
        for c, d in [("rnn", 1), ("gru", 1), ("rnn", 2), ("gru", 2), ("intersection", 2)]
        for p in (100, 1000)
    ]
    fig = capacity_figure(rows, cell_configs)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["1 layer", "2 layers"]
    assert [ax.get_xscale() for ax in axes] == ["log", "log"]
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert labels == [["RNN", "GRU"], ["RNN", "GRU", "+RNN"]]


def test_fit_and_plot_log_to_wandb_offline_and_finish(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    write_runs(tmp_path / "runs", [capacity_run("rnn", 1, 100, 300.0)])
    common = ["--experiment", "exp-x", "--wandb", "online"]  # no key: falls back to offline
    fit = [*RNNCAP, "fit", "--runs", "runs", "--out", "tables", "--metrics", "m.json"]
    subprocess.run([*fit, *common], check=True, stdin=subprocess.DEVNULL, timeout=300)
    plot = [*RNNCAP, "plot", "--tables", "tables", "--out", "fig"]
    subprocess.run([*plot, *common], check=True, stdin=subprocess.DEVNULL, timeout=300)
    runs = sorted((tmp_path / "results" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one fit run for the one cell, one plot run
    for run in runs:
        assert list(run.glob("*.wandb"))  # the run's log was written and closed


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params |= {"experiment": "tiny", "wandb": "disabled"}
    params["capacity"] |= {
        "cells": ["rnn", "intersection"],  # the +RNN is skipped at depth 1
        "depths": [1, 2],
        "budgets": [60, 150],
        "seeds": [0],
    }
    params["capacity"]["task"] = {"input_dim": 10, "steps": 3}
    params["capacity"]["search"] |= {"trials": 2, "population": 2, "val_check_interval": 10}
    params["capacity"]["overrides"] = "hardware=cpu trainer.max_steps=20"
    params["memory"] |= {
        "cells": ["rnn"],
        "depths": [1],
        "deep_cells": ["intersection"],
        "deep_depths": [2],
        "widths": [2],
        "seeds": [0],
    }
    params["memory"]["task"] |= {"input_dim": 3, "samples": 64, "mc_delays": 0}
    params["memory"]["train"] |= {"max_steps": 20}
    return params


def smallest_params() -> dict:
    """The smallest grid: one capacity run (and the fit and plot); no memory runs."""
    params = tiny_params()
    params["capacity"] |= {"cells": ["rnn"], "depths": [1], "budgets": [60]}
    params["memory"] |= {"cells": [], "deep_cells": [], "seeds": []}
    return params


def make_repo(tmp_path: Path, params: dict | None = None) -> Path:
    """A git repository holding the project's pipeline files, as a clone has them (no caches),
    and a tiny grid (default: ``tiny_params``)."""
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("cache", "tmp", "__pycache__", "*.egg-info")
    for name in ("conf", "src", ".dvc"):
        shutil.copytree(ROOT / name, repo / name, ignore=ignore)
    for name in ("train.py", "dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(params or tiny_params()))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=repo, check=True)
    return repo


def dvc(repo: Path, *args: str) -> str:
    """``dvc <args>`` in ``repo`` as ``make run`` calls it: the venv's commands on PATH."""
    env = cli_env() | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def dvc_repro(repo: Path) -> str:
    return dvc(repo, "repro", "plot")


def write_caches(src: Path) -> None:
    """What working in a checkout leaves in its source folders: bytecode (its __pycache__
    deleted, then the package imported afresh from ``src``), tool caches and editor files."""
    for cache in src.rglob("__pycache__"):
        shutil.rmtree(cache)
    env = cli_env() | {"PYTHONPATH": str(src)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = "import rnncap.cli, rnncap.core.run, rnncap.analysis.plots, rnncap.tasks.memory"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert list(src.glob("rnncap/core/__pycache__/run.*.pyc"))  # written into this copy
    for cache in (".ruff_cache", ".pytest_cache", ".mypy_cache", "rnncap.egg-info"):
        (src / "rnncap" / "cells" / cache).mkdir()
        (src / "rnncap" / "cells" / cache / "x").write_text("x")
    (src / "rnncap" / "tasks" / ".capacity.py.swp").write_text("x")  # an editor's
    (src / "rnncap" / "tasks" / "capacity.py~").write_text("x")


def test_imports_and_tool_caches_in_the_sources_leave_the_pipeline_up_to_date(tmp_path):
    """Issue 14: stages depend on source folders (src/rnncap/core, cells, tasks, ...), and
    .dvcignore keeps what imports, tests, linters and editors write there out of their hashes:
    after a run, importing the package changes nothing `dvc status` sees. The stage here is
    cell_configs (it depends on core/, cells/ and tasks/, and runs in seconds); the slow
    test does the same after the whole tiny grid."""
    repo = make_repo(tmp_path, smallest_params())
    dvc(repo, "repro", "cell_configs")
    write_caches(repo / "src")
    status = dvc(repo, "status", "--with-deps", "cell_configs")
    assert status.strip() == "Data and pipelines are up to date.", status


@pytest.mark.slow
def test_dvc_repro_runs_a_tiny_grid_then_does_nothing_then_reruns_one_cell(tmp_path):
    repo = make_repo(tmp_path)
    first = dvc_repro(repo)
    trained = sorted(
        p.parent.parent.name for p in (repo / "results" / "train").rglob("metrics.json")
    )
    assert sorted(set(trained)) == [
        "capacity-intersection-d2-p150-tpe",
        "capacity-intersection-d2-p60-tpe",
        "capacity-rnn-d1-p150-tpe",
        "capacity-rnn-d1-p60-tpe",
        "capacity-rnn-d2-p150-tpe",
        "capacity-rnn-d2-p60-tpe",
        "memory",
    ]
    assert first.count("Running stage 'train_capacity") == 1
    assert first.count("Running stage 'train_memory") == 1
    for name in ("capacity_vs_params", "bits_per_param", "memory_per_unit"):
        assert (repo / "results" / "figures" / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE
    metrics = json.loads((repo / "results" / "capacity.json").read_text())
    memory = (repo / "results" / "capacity" / "memory.csv").read_text().splitlines()
    assert len(memory) == 3  # header, rnn and +RNN at width 2
    assert set(metrics["capacity"]) == set(metrics["memory"]) == {"rnn", "intersection"}

    write_caches(repo / "src")  # importing the package, linting, editing: no change to DVC
    second = dvc_repro(repo)
    assert "Running stage" not in second

    # a cell's config changes: the training grids (one stage each) rerun, the data does not
    cell = repo / "conf" / "cell" / "rnn.yaml"
    cell.write_text(cell.read_text() + "recurrent_scale: 0.9\n")  # a key the class defaults
    third = dvc_repro(repo)
    reran = {line.split("'")[1] for line in third.splitlines() if "Running stage" in line}
    assert reran == {"cell_configs", "train_capacity", "train_memory", "fit", "plot"}
