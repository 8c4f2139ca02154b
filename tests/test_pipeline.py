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
from conftest import CELL_NAMES, ROOT, compose_cfg, without_wall
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_analysis import capacity_run, memory_run, synthetic_grid, write_runs
from test_train import cli_env

from rnncap.analysis.capacity import analyse
from rnncap.analysis.plots import capacity_figure, plot_all
from rnncap.base.errors import ConfigError
from rnncap.cli import param_overrides
from rnncap.core.run import train
from rnncap.experiments import discover, grid_commands
from rnncap.generate import generate, write_cell_configs
from rnncap.tasks.capacity import CapacityTask

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
        results.append(without_wall(json.loads((tmp_path / sub / "metrics.json").read_text())))
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
        results.append(without_wall(json.loads((tmp_path / sub / "metrics.json").read_text())))
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


def params_grids(path: Path = ROOT / "params.yaml") -> dict:
    return yaml.safe_load(path.read_text())["grids"]


# `rnncap train-grid capacity --dry-run`: the embedded default's searches (the five cells at
# depth 1, then the +RNN at depth 2), CELLS and DEPTHS filled in per cell group
CAPACITY_ARGS = (
    "-m sweep=embedded task=capacity cell=CELLS depth=DEPTHS model.budget=400 seed=0 "
    "hydra.sweeper.grid=[cell,depth,model.budget,seed] hydra.sweeper.n_trials=16 "
    "hydra.sweeper.population=16 hydra.sweeper.pruner=null trainer.val_check_interval=200 "
    "trainer.max_steps=3200 model.halving.eta=4 model.halving.min_steps=200 "
    "hydra.sweeper.sampler.seed=0 hydra/launcher=joblib hydra.launcher.n_jobs=2 "
    "hydra.sweeper.n_jobs=2 hydra.sweeper.storage=journal:///OUT/studies.log hydra.sweep.dir=OUT "
    "task.input_dim=16 task.steps=5 trainer.checkpoint_every=null "
    "trainer.enable_progress_bar=false hardware=cpu"
)
MEMORY_ARGS = (
    "-m task=memory cell=CELLS depth=DEPTHS model.hidden=4,12,24 seed=0 "
    "task.data_file=DATA/s${seed}.pt task.input_dim=16 task.delay=4 task.input_scale=1.0 "
    "task.samples=2048 task.mc_delays=0 trainer.max_steps=300 optimizer.lr=0.01 "
    "hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=OUT "
    "hydra.sweep.subdir=${cell.name}-d${depth}-n${model.hidden}-s${seed} "
    "trainer.checkpoint_every=null trainer.enable_progress_bar=false hardware=cpu"
)


def test_the_capacity_grid_expands_into_its_searches_and_memory_runs():
    """The params entry `grids.capacity` gives these train.py arguments, written out here: a
    search per cell group with successive halving, then the memory runs per cell group."""
    search, deep_search, memory, deep = grid_commands(ROOT / "params.yaml", "capacity")
    out = "results/capacity/runs"
    search_args = CAPACITY_ARGS.replace("OUT", f"{out}/capacity")
    assert (
        search
        == search_args.replace("CELLS", "rnn,irnn,gru,lstm,ugrnn").replace("DEPTHS", "1").split()
    )
    assert (
        deep_search == search_args.replace("CELLS", "intersection").replace("DEPTHS", "2").split()
    )
    memory_args = MEMORY_ARGS.replace("OUT", f"{out}/memory").replace("DATA", f"{out}/data")
    cells = memory_args.replace("CELLS", "rnn,irnn,gru,lstm,ugrnn").replace("DEPTHS", "1")
    assert memory == cells.split()
    assert deep == memory_args.replace("CELLS", "intersection").replace("DEPTHS", "2").split()


def test_every_grid_is_a_train_and_an_analyse_stage_writing_one_layout():
    """Discovered: each entry of params.yaml `grids` is trained by `train@NAME` into
    results/NAME/runs and analysed by `analyse@NAME` into results/NAME/report; its experiment
    is a module of rnncap.experiments."""
    stages, experiments = dvc_stages(ROOT), discover()
    grids = params_grids()
    assert grids and {g["experiment"] for g in grids.values()} <= set(experiments)
    templated = {f"{kind}@{name}" for name in grids for kind in ("train", "analyse")}
    assert set(stages) == templated | {"cell_configs", "plot"}  # and nothing hand-written
    for name in grids:
        assert stages[f"train@{name}"].cmd == f"rnncap train-grid {name}"
        assert stages[f"analyse@{name}"].cmd == f"rnncap analyse {name}"
        assert {str(Path(o.def_path)) for o in stages[f"train@{name}"].outs} == {
            f"results/{name}/runs"
        }
        assert f"results/{name}/runs" in dep_paths(stages[f"analyse@{name}"])
        params = {k for p in stages[f"train@{name}"].params for k in p.params}
        assert params == {"jobs", f"grids.{name}"}  # only its own entry: others do not rerun it


def test_beyond_is_the_capacity_grid_for_the_new_cells(monkeypatch, capsys):
    """`rnncap train-grid beyond --dry-run`: the default grid's command lines with the new
    cells, writing under results/beyond/."""
    from rnncap.cli import main

    grids = params_grids()
    monkeypatch.chdir(ROOT)
    main(["train-grid", "beyond", "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" -m ")[0] for line in lines] == [
        "run: rnncap generate data results/beyond/runs/data/s0.pt task=memory seed=0 "
        + " ".join(f"task.{k}={v}" for k, v in grids["capacity"]["memory"]["task"].items()),
        "run: python train.py",
        "run: python train.py",
    ]
    capacity, memory = lines[1].split()[3:], lines[2].split()[3:]
    assert f"cell={','.join(grids['beyond']['cells'])}" in capacity
    assert "hydra.sweep.dir=results/beyond/runs/capacity" in capacity
    own = ("cell=", "hydra.sweep.dir=", "hydra.sweeper.storage=")  # what differs by design
    default = grid_commands(ROOT / "params.yaml", "capacity")[0]
    assert [a for a in capacity if not a.startswith(own)] == [
        a for a in default if not a.startswith(own)
    ]
    assert f"cell={','.join(grids['beyond']['memory']['cells'])}" in memory
    assert "task.data_file=results/beyond/runs/data/s${seed}.pt" in memory


def test_make_run_reaches_only_the_default_grid():
    """`dvc repro plot` (`make run`) trains and analyses the capacity grid only: every other
    grid is a named extra, `dvc repro analyse@NAME`."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        plot = next(s for s in graph if s.addressing == "plot")
        upstream = {s.addressing for s in nx.dfs_postorder_nodes(graph, plot)}
        precision = next(s for s in graph if s.addressing == "analyse@precision")
        rescored = {s.addressing for s in nx.dfs_postorder_nodes(graph, precision)}
    assert upstream == {"plot", "analyse@capacity", "train@capacity", "cell_configs"}
    assert {"train@capacity", "train@precision"} <= rescored  # it re-scores both grids
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    assert {"results/distance/report/max_distance.png"} <= {p for p in plots if isinstance(p, str)}


def test_an_unknown_grid_or_experiment_is_one_line(tmp_path, monkeypatch, capsys):
    from rnncap.cli import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["grids"]["odd"] = {**params["grids"]["distance"], "experiment": "nope"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(ROOT)
    for grid, says in [("nope", "no grid `nope` under `grids`"), ("odd", "experiment='nope'")]:
        with pytest.raises(SystemExit) as exit_status:
            main(["train-grid", grid, "--params", str(tmp_path / "p.yaml"), "--dry-run"])
        err = capsys.readouterr().err
        assert exit_status.value.code == 2 and err.count("\n") == 1 and says in err, err


def dep_paths(stage) -> set[str]:
    return {str(Path(d.def_path)) for d in stage.deps}


def source_modules() -> dict[str, Path]:
    """Module name -> file, for train.py and every module under src/."""
    modules = {"train": ROOT / "train.py"}
    for path in (ROOT / "src").rglob("*.py"):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_files(*roots: str, top_only: tuple[str, ...] = ("rnncap.cli",)) -> set[str]:
    """The project files (relative to ROOT) that importing ``roots`` can load: every import
    statement, at any depth (lazy imports too), with the packages above each module; of the
    modules in ``top_only`` only their top-level imports (what runs lazily is among the roots)."""
    modules, seen, todo = source_modules(), set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo += [name.rsplit(".", 1)[0]] if "." in name else []  # its package's __init__
        source = modules[name].read_text()
        tree = ast.parse(source)
        if "pkgutil.iter_modules" in source:  # discovery: it imports every module beside it
            package = name if modules[name].name == "__init__.py" else name.rsplit(".", 1)[0]
            todo += [m for m in modules if m.rsplit(".", 1)[0] == package]
        for node in tree.body if name in top_only else ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return {str(modules[m].relative_to(ROOT)) for m in seen}


def covered(files: set[str], deps: set[str]) -> set[str]:
    """The files no dependency (a file or a folder above it) covers."""
    return {f for f in files if not any(f == d or f.startswith(d + "/") for d in deps)}


TASKS = tuple(f"rnncap.tasks.{p.stem}" for p in (ROOT / "conf" / "task").glob("*.yaml"))


def test_every_stage_calls_rnncap_and_depends_on_all_it_imports():
    """Discovered from dvc.yaml: a training stage runs train.py (which instantiates a task from
    its config) and the experiment's expansion, which imports at its top only what expanding
    needs; an analysis stage runs the experiment's commands, lazy imports included."""
    stages = dvc_stages(ROOT)
    sweeper = {str(p.relative_to(ROOT)) for p in (ROOT / "src/hydra_plugins").rglob("*.py")}
    grids = params_grids()
    top = {"rnncap.cli", "rnncap.experiments"} | {  # the experiments the CLI discovers
        f"rnncap.experiments.{p.stem}" for p in (ROOT / "src/rnncap/experiments").glob("*.py")
    }
    for name, stage in stages.items():
        assert stage.cmd.startswith("rnncap "), (name, stage.cmd)
        kind, _, grid = name.partition("@")
        module = f"rnncap.experiments.{grids[grid]['experiment']}" if grid else ""
        if kind == "train":  # train.py, the expansion, `rnncap generate data`
            files = imported_files("train", "rnncap.cli", "rnncap.train_grid", *TASKS,
                                   "rnncap.generate", top_only=top) | sweeper  # fmt: skip
        elif kind == "analyse":  # the experiment's commands
            files = imported_files("rnncap.cli", module, top_only=top - {module})
        elif kind == "plot":  # `rnncap summary capacity`: the capacity experiment's table
            module = "rnncap.experiments.capacity"
            files = imported_files("rnncap.cli", module, top_only=top - {module})
        else:
            files = imported_files("rnncap.cli", "rnncap.generate", top_only=top)
        assert not covered(files, dep_paths(stage)), (name, covered(files, dep_paths(stage)))
    analysis = dep_paths(stages["analyse@distance"])
    assert not analysis & {"src/rnncap/tasks", "src/rnncap", "conf/task", "conf/sweep"}


def largest_b(grid: dict) -> int:
    """The top of b's search range (task.samples) at the grid's largest budget."""
    search = [f"sweep={grid['search']['sweep']}", f"model.budget={max(grid['budgets'])}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        space = compose("train", overrides=search, return_hydra_config=True).hydra.sweeper.params
    return OmegaConf.to_container(space, resolve=True)["task.samples"]["high"]


def test_paper_params_have_the_same_keys_as_the_default():
    def keys(node, prefix=""):
        if not isinstance(node, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}.{k}") for k, v in node.items()))

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "params-paper.yaml").read_text())
    assert keys(paper) == keys(default)
    capacity = paper["grids"]["capacity"]
    assert capacity["depths"] == [1, 2, 4, 8]
    assert max(capacity["budgets"]) >= 100_000
    assert largest_b(capacity) <= 2 ** capacity["task"]["input_dim"]  # distinct inputs exist


@pytest.mark.parametrize("params", ["params.yaml", "params-paper.yaml"])
def test_capacity_scaling_is_the_protocol_at_three_sizes(params):
    """capacity_scaling: the tanh RNN and the GRU at about 500, 2000 and 8000 parameters under
    sweep=capacity with successive halving; its largest b has distinct inputs."""
    grid = yaml.safe_load((ROOT / params).read_text())["grids"]["capacity_scaling"]
    assert grid["cells"] == ["rnn", "gru"] and grid["budgets"] == [500, 2000, 8000]
    assert grid["search"]["sweep"] == "capacity" and grid["search"]["halving"]["eta"] >= 2
    assert "cell.nonlinearity=tanh" in grid["overrides"].split()
    assert largest_b(grid) <= 2 ** grid["task"]["input_dim"]


def test_shared_settings_are_written_once():
    """`beyond` and `precision` are the capacity grid by a YAML merge key, not a copy."""
    text = (ROOT / "params.yaml").read_text()
    assert text.count("sweep: embedded") == 1 and text.count("val_check_interval: 200") == 1
    grids = params_grids()
    assert grids["beyond"]["search"] == grids["precision"]["search"] == grids["capacity"]["search"]


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
    capacity = params["grids"]["capacity"]
    capacity |= {
        "cells": ["rnn", "intersection"],  # the +RNN is skipped at depth 1
        "depths": [1, 2],
        "budgets": [60, 150],
        "seeds": [0],
        "task": {"input_dim": 10, "steps": 3},
        "overrides": "hardware=cpu trainer.max_steps=20",
    }
    capacity["search"] |= {"trials": 2, "population": 2, "val_check_interval": 10}
    capacity["memory"] |= {
        "cells": ["rnn"],
        "depths": [1],
        "deep_cells": ["intersection"],
        "deep_depths": [2],
        "widths": [2],
        "seeds": [0],
    }
    capacity["memory"]["task"] |= {"input_dim": 3, "samples": 64, "mc_delays": 0}
    capacity["memory"]["train"] |= {"max_steps": 20}
    return params


def smallest_params() -> dict:
    """The smallest grid: one capacity run (and the fit and plot); no memory runs."""
    params = tiny_params()
    params["grids"]["capacity"] |= {"cells": ["rnn"], "depths": [1], "budgets": [60]}
    params["grids"]["capacity"]["memory"] = None
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
        p.parent.parent.name for p in (repo / "results" / "capacity" / "runs").rglob("metrics.json")
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
    assert first.count("Running stage 'train@capacity") == 1
    report = repo / "results" / "capacity" / "report"
    for name in ("capacity_vs_params", "bits_per_param", "memory_per_unit"):
        assert (report / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE
    metrics = json.loads((report / "summary.json").read_text())
    memory = (report / "memory.csv").read_text().splitlines()
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
    assert reran == {"cell_configs", "train@capacity", "analyse@capacity", "plot"}
    shown = dvc(repo, "metrics", "show")  # the offered summary: a few readable columns
    assert "failed" not in shown and len(shown.splitlines()[0].split()) <= 8, shown
