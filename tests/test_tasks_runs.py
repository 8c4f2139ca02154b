"""The tasks end to end: one short run each through the real config (distance and counting
with every cell), the memory task against its theory, and bad task values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import CELL_NAMES, TASK_NAMES, compose_cfg, tiny_task
from hydra.utils import get_class
from test_train import run_cli

from rnncap.base.errors import ConfigError
from rnncap.core.run import train

KEYS = {
    "capacity": {"samples", "accuracy", "bits", "bits_per_param"},
    "memory": {"mse", "r2", "mc", "theory_mse", "delay", "input_scale", "input_dim"},
    "rcf": {"mse"},
    "text8": {"bpc", "test_bpc"},
    "parentheses": {"accuracy", "loss"},
    "arithmetic": {"accuracy", "loss"},
    "distance": {"accuracy", "loss", "recalled_bits", "symbols", "length", "delay"},
    "counting": {"accuracy", "loss", "long_accuracy", "long_accuracy_16", "long_accuracy_40"}
    | {"saturation", "train_length", "test_lengths", "max_count"},
}
CONTRACT = {"cell", "task", "depth", "hidden", "input_dim", "params", "seed", "status"}


@pytest.fixture
def task_cfg(tmp_path):
    """compose(task=<name>, overrides) shrunk to a tiny problem, writing into tmp_path."""

    def make(task: str, *overrides: str):
        tiny = [
            *tiny_task(task, tmp_path),
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.checkpoint_every=null",
        ]
        return compose_cfg([*tiny, *overrides], tmp_path / "run")

    return make


def read_metrics(cfg) -> dict:
    return json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


# one short run of every task in conf/task, each with another cell (all pairs: the slow matrix)
RUNS = [(task, CELL_NAMES[i % len(CELL_NAMES)]) for i, task in enumerate(TASK_NAMES)]
# the new tasks with every cell, a few steps each (depth 2: the +RNN starts there)
EVERY_CELL = [(task, cell) for task in ("distance", "counting") for cell in CELL_NAMES]


@pytest.mark.parametrize(("task", "cell"), RUNS)
def test_each_task_runs_end_to_end(task_cfg, task, cell):
    cfg = task_cfg(task, f"cell={cell}", "depth=2", "model.budget=600")
    objective = train(cfg)
    m = read_metrics(cfg)
    assert m.keys() >= CONTRACT | KEYS.get(task, set())
    assert m["status"] == "ok" and m["task"] == task and m["cell"] == cell and m["params"] <= 600
    assert objective == m[get_class(cfg.task._target_).objective]
    if task in ("parentheses", "arithmetic"):
        assert 0 <= m["accuracy"] <= 1 and m["loss"] > 0
    if task == "memory":
        assert m["theory_mse"] == max(0.0, (6 - m["hidden"]) / 6) and m["delay"] == 2


@pytest.mark.parametrize(("task", "cell"), EVERY_CELL)
def test_new_task_runs_with_every_cell(task_cfg, task, cell):
    cfg = task_cfg(task, f"cell={cell}", "depth=2", "model.hidden=4", "trainer.max_steps=3")
    assert train(cfg) == read_metrics(cfg)["loss"]
    m = read_metrics(cfg)
    assert m["status"] == "ok" and m.keys() >= CONTRACT | KEYS[task] and m["cell"] == cell
    assert 0 <= m["accuracy"] <= 1 and m["loss"] > 0
    if task == "distance":
        assert 0 <= m["recalled_bits"] <= math.log2(3)
    else:
        assert m["long_accuracy"] == m["long_accuracy_40"] and m["test_lengths"] == [16, 40]
        # null where the cell computes no tanh or sigmoid (IRNN, IndRNN, the uRNN's modReLU,
        # the bare LRU layer); a gated cell always has sigmoids to saturate
        gated = bool(get_class(cfg.cell._target_).forget_gates)
        assert (m["saturation"] is not None) if gated else True
        assert m["saturation"] is None or 0 <= m["saturation"] <= 1


@pytest.mark.parametrize(("width", "expected", "tolerance"), [(4, 0.5, 0.08), (12, 0.0, 0.05)])
def test_memory_error_follows_one_real_per_unit(task_cfg, width, expected, tolerance):
    cfg = task_cfg(
        "memory",
        "task.input_dim=8",
        "task.samples=512",
        "task.eval_samples=256",
        f"model.hidden={width}",
        "trainer.max_steps=500",
        "trainer.val_check_interval=500",
    )
    train(cfg)
    m = read_metrics(cfg)
    assert m["theory_mse"] == expected
    assert m["mse"] == pytest.approx(expected, abs=tolerance)
    assert m["r2"] == pytest.approx(1 - expected, abs=tolerance + 0.02)


BAD = [
    ("memory", ["task.delay=-1"], "task.delay=-1 is out of range: must be >= 0"),
    ("memory", ["task.input_scale=0"], "task.input_scale=0 is out of range: must be > 0"),
    ("memory", ["task.distribution=cauchy"], "task.distribution='cauchy'; choose one of"),
    ("memory", ["task.mc_delays=100"], "task.mc_delays=100 must be < 100"),
    ("rcf", ["task.function=sine"], "task.function='sine'; choose one of table, smooth"),
    ("rcf", ["task.output_dim=0"], "task.output_dim=0 is out of range"),
    ("parentheses", ["task.streams=0"], "task.streams=0 is out of range: must be >= 1"),
    ("parentheses", ["task.max_count=0"], "task.max_count=0 is out of range"),
    ("parentheses", ["task.steps=0"], "task.steps=0 is out of range"),
    ("distance", ["task.delay=0"], "task.delay=0 is out of range: must be >= 1"),
    ("distance", ["task.delay=8"], "task.delay=8 must be < task.length=8"),
    ("distance", ["task.symbols=1"], "task.symbols=1 is out of range: must be >= 2"),
    ("counting", ["task.train_length=1"], "task.train_length=1 is out of range: must be >= 2"),
    ("counting", ["task.test_lengths=[16,4]"], "task.test_lengths=[16, 4] must be a non-empty"),
    ("counting", ["task.test_lengths=[]"], "lengths >= task.train_length=8"),
    ("arithmetic", ["task.max_digits=0"], "task.max_digits=0 is out of range: must be >= 1"),
    ("arithmetic", ["task.max_digits=18"], "task.max_digits=18 must be <= 17"),
    ("text8", ["task.path=/no/such/text8"], "task.path=/no/such/text8 is not a file"),
    ("text8", ["task.val_fraction=0.5", "task.test_fraction=0.5"], "must be < 1"),
    ("text8", ["task.seq_len=0"], "task.seq_len=0 is out of range"),
    ("text8", ["task.seq_len=600"], "task.seq_len=600 is longer than an evaluation split"),
]


@pytest.mark.parametrize(("task", "overrides", "message"), BAD, ids=[" ".join(b[1]) for b in BAD])
def test_bad_task_value_is_one_clear_error(task_cfg, task, overrides, message):
    cfg = task_cfg(task, "model.hidden=4", *overrides)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()


def test_missing_text8_stops_the_command_line_with_one_line(tmp_path):
    url = (tmp_path / "offline" / "text8.zip").as_uri()  # an address that cannot be fetched
    proc = run_cli("task=text8", f"task.url={url}", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1 and f"put the unzipped text8 at {tmp_path / 'data' / 'text8'}" in errors[0]
    )
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("depth", [1, 2, 8])
def test_every_task_cell_and_depth(task_cfg, task, cell, depth):
    if cell == "intersection" and depth == 1:
        pytest.skip("the +RNN starts at depth 2")
    cfg = task_cfg(task, f"cell={cell}", f"depth={depth}", "model.hidden=4", "trainer.max_steps=4")
    train(cfg)
    m = read_metrics(cfg)
    assert (
        m["status"] == "ok" and m.keys() >= CONTRACT | KEYS.get(task, set()) and m["depth"] == depth
    )


def test_diverged_memory_run_is_recorded(task_cfg):
    cfg = task_cfg("memory", "cell=irnn", "optimizer=sgd", "optimizer.lr=1e30", "model.hidden=8")
    assert train(cfg) is None
    m = read_metrics(cfg)
    assert m["status"] == "diverged" and m["mse"] is None and m["mc"] is None and m["delay"] == 2
