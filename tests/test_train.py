"""End-to-end runs through Hydra's compose API and the real command line."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CELL_NAMES, ROOT

from rnncap.core.module import RNNCapModule
from rnncap.core.run import train

CONTRACT = {"cell", "depth", "hidden", "input_dim", "params", "seed", "status"}
CAPACITY = {"samples", "accuracy", "bits", "bits_per_param"}


def read_metrics(cfg) -> dict:
    """metrics.json less the wall seconds of its convergence rows (the one timed value)."""
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    for row in metrics.get("convergence", []):
        assert row.pop("wall_s") >= 0
    return metrics


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_each_cell_trains_end_to_end(make_cfg, cell):
    cfg = make_cfg(f"cell={cell}", "depth=2", "model.budget=300")
    objective = train(cfg)
    m = read_metrics(cfg)
    assert m.keys() >= CONTRACT | CAPACITY
    assert m["cell"] == cell and m["depth"] == 2 and m["status"] == "ok"
    assert m["params"] <= 300 and m["samples"] == 32 and m["input_dim"] == 6
    assert objective == m["bits"] and m["bits_per_param"] == pytest.approx(m["bits"] / m["params"])


def test_small_tanh_rnn_memorises_well_under_capacity(make_cfg):
    cfg = make_cfg(
        "model.hidden=16", "task.samples=64", "task.input_dim=8", "trainer.max_steps=400"
    )
    train(cfg)
    m = read_metrics(cfg)
    assert m["accuracy"] > 0.95
    assert m["bits"] > 0.7 * 64


def test_same_seed_same_metrics_and_other_seed_differs(make_cfg, tmp_path):
    runs = []
    for seed, sub in [(1, "a"), (1, "b"), (2, "c")]:
        cfg = make_cfg(f"seed={seed}", "model.hidden=5")
        cfg.output_dir = str(tmp_path / sub)
        train(cfg)
        runs.append(read_metrics(cfg))
    assert runs[0] == runs[1]
    assert runs[0]["loss"] != runs[2]["loss"]


def test_diverged_run_is_recorded_and_returns(make_cfg):
    cfg = make_cfg("cell=irnn", "optimizer=sgd", "optimizer.lr=1e30", "model.hidden=8")
    assert train(cfg) is None
    m = read_metrics(cfg)
    assert m["status"] == "diverged" and m["bits"] is None and m["samples"] == 32
    assert m["first_loss"] > 0 and m["final_loss"] is None  # its last loss is not finite


def test_run_stopped_part_way_resumes_to_the_uninterrupted_result(make_cfg, tmp_path, caplog):
    """A run stopped at step 15 (mid-epoch, minibatches) and rerun to step 20 ends where an
    uninterrupted run ends; the control resumes a checkpoint whose weights were nudged and ends
    elsewhere, so a rerun that ignored the checkpoint (and trained from scratch) would fail."""
    args = ["model.hidden=4", "task.batch_size=10", "trainer.checkpoint_every=5"]

    def run(name: str, *extra: str) -> dict:
        cfg = make_cfg(*args, *extra)
        cfg.output_dir = str(tmp_path / name)
        train(cfg)
        return read_metrics(cfg)

    whole = run("whole")
    results = {}
    for name in ["resumed", "nudged"]:
        run(name, "trainer.max_steps=15")
        last = tmp_path / name / "checkpoints" / "last.ckpt"
        state = torch.load(last, weights_only=True)
        assert state["global_step"] == 15
        if name == "nudged":
            for value in state["state_dict"].values():
                if value.is_floating_point():
                    value.add_(0.05)
            torch.save(state, last)
        caplog.clear()
        with caplog.at_level("INFO"):
            results[name] = run(name)
        assert f"resuming from checkpoint {last}" in caplog.text
    assert results["resumed"] == whole
    assert results["nudged"]["loss"] != whole["loss"]


def test_csv_logger_records_what_the_run_logged(make_cfg, monkeypatch):
    """metrics.csv holds the module's train/loss values, one validation row per
    val_check_interval steps whose last values are the final metrics, and a last row equal to
    metrics.json."""
    logged: list[float] = []
    log = RNNCapModule.log

    def spy(self, name, value, *args, **kwargs):
        if name == "train/loss":
            logged.append(float(value.detach()))
        return log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(RNNCapModule, "log", spy)
    cfg = make_cfg("logger=csv", "model.hidden=4")  # 20 steps, evaluated every 10
    train(cfg)
    with open(Path(cfg.output_dir) / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    m = read_metrics(cfg)

    train_rows = [r for r in rows if r["train/loss"]]
    assert len(logged) == 2 and [float(r["train/loss"]) for r in train_rows] == logged
    assert [int(r["step"]) for r in train_rows] == [9, 19]  # log_every_n_steps = val_check_interval
    assert all(math.isfinite(v) and v > 0 for v in logged)
    val_rows = [r for r in rows if r["val/loss"]]
    assert [int(r["step"]) for r in val_rows] == [9, 19]  # after steps 10 and 20
    assert float(val_rows[-1]["val/loss"]) == pytest.approx(m["loss"], rel=1e-6)
    assert float(val_rows[-1]["val/accuracy"]) == m["accuracy"]
    final = {k[6:]: float(v) for k, v in rows[-1].items() if k.startswith("final/")}
    numbers = {k: v for k, v in m.items() if isinstance(v, (int, float))}
    assert final == numbers


def test_wandb_offline_run_is_finished_and_grouped(make_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=wandb", "logger.offline=false", "experiment_name=grp", "model.hidden=4")
    train(cfg)
    import wandb

    assert wandb.run is None  # the job ended its run
    runs = list((Path(cfg.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (Path(cfg.output_dir) / "wandb_id.txt").read_text().strip() in runs[0].name


def cli_env() -> dict[str, str]:
    """The environment of a command-line job started by a test: like a fresh shell's. An
    in-process W&B run of an earlier test leaves WANDB_SERVICE set, and a child would attach to
    that service, where a killed child's run stays registered ("run ID ... is in use")."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "HYDRA_FULL_ERROR": "0", "WANDB_SILENT": "true"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_multirun_from_the_command_line(tmp_path):
    tiny = [
        "task.samples=16",
        "task.input_dim=5",
        "trainer.max_steps=5",
        "trainer.val_check_interval=5",
    ]
    proc = run_cli(
        "-m", "cell=rnn,gru", "depth=1,2", *tiny, f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = sorted(
        (m["cell"], m["depth"])
        for m in (json.loads(p.read_text()) for p in tmp_path.glob("sweep/*/metrics.json"))
    )
    assert found == [("gru", 1), ("gru", 2), ("rnn", 1), ("rnn", 2)]


def test_rerun_with_another_config_in_the_same_run_dir_is_refused(make_cfg):
    from rnncap.base.errors import ConfigError

    train(make_cfg("model.hidden=4", "trainer.checkpoint_every=10"))
    with pytest.raises(
        ConfigError, match=r"another config \(cell.nonlinearity: 'tanh' -> 'relu'\)"
    ):
        train(make_cfg("model.hidden=4", "trainer.checkpoint_every=10", "cell.nonlinearity=relu"))
    longer = make_cfg("model.hidden=4", "trainer.checkpoint_every=10", "trainer.max_steps=30")
    train(longer)  # more steps (or other hardware) resume the same run
    assert read_metrics(longer)["status"] == "ok"


# ---- what a new user met (issue 24, item 7) --------------------------------------------------
TINY_CLI = ["task.samples=8", "task.input_dim=4", "task.steps=2", "model.hidden=4"]
TINY_CLI += ["trainer.max_steps=2", "trainer.val_check_interval=1", "trainer.checkpoint_every=null"]


def test_a_plain_grid_skips_its_refused_points_and_says_so_at_the_end(tmp_path):
    """`-m cell=intersection,rnn depth=1,2`: the +RNN at depth 1 is refused; the grid goes on,
    notes the skip in one line, leaves no folder for it and lists what it skipped at the end."""
    sweep = tmp_path / "sweep"
    grid = ["-m", "cell=intersection,rnn", "depth=1,2", *TINY_CLI, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(*grid, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = sorted(
        (m["cell"], m["depth"])
        for m in map(json.loads, map(Path.read_text, sweep.glob("*/metrics.json")))
    )
    assert found == [("intersection", 2), ("rnn", 1), ("rnn", 2)]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("skip job")]
    assert len(notes) == 1 and notes[0].startswith("skip job 0 (cell=intersection depth=1 ")
    assert notes[0].endswith(
        "): cell=intersection needs depth >= 2 (got depth=1): the +RNN's "
        "depth gate only acts between layers, and the paper excludes depth 1"
    )
    summary = proc.stderr[proc.stderr.index("skipped 1 of 4 points") :].splitlines()
    assert (
        summary[1].startswith("  cell=intersection depth=1 ") and "needs depth >= 2" in summary[1]
    )
    assert not (sweep / "0").exists()  # no debris of the refused point
    assert (sweep / "skipped.txt").read_text().count("\n") == 1
    # every point refused: nothing ran, exit 2
    proc = run_cli("-m", "cell=intersection", "depth=1", *TINY_CLI, f"hydra.sweep.dir={sweep}2",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: every point of the grid was refused: nothing ran"
    )


def test_an_appended_typo_is_refused_naming_the_nearest_key_and_leaves_no_folder(tmp_path):
    """`+model.bugdet=200` (Hydra's hint for `model.bugdet=200`) trained at the default budget;
    now it is one line, exit 2, and the refused run leaves no outputs/<date>/<time> behind."""
    proc = run_cli("+model.bugdet=200", *TINY_CLI[:3], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: model.bugdet is not a key of model: did you mean model.budget? "
        "(its keys: budget, halving, hidden, members, population)"
    )
    assert not (tmp_path / "outputs").exists()


def test_a_run_says_where_its_metrics_went_and_wandb_prints_no_anonymous_line(tmp_path):
    """A real offline W&B run from the command line, W&B's own output on."""
    env = {k: v for k, v in cli_env().items() if k != "WANDB_SILENT"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "logger=wandb", *TINY_CLI, "hydra.run.dir=run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))  # W&B did run
    assert "anonymous" not in output
    assert f"wrote {(tmp_path / 'run' / 'metrics.json').resolve()}" in output


def test_help_says_what_train_py_does_and_lists_only_the_groups_users_choose(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python train.py [key=value ...]: train one recurrent network")
    assert "\ncell: gru, indrnn, intersection, irnn," in proc.stdout
    assert "\nhydra/launcher: slurm\n" in proc.stdout
    assert "schema/" not in proc.stdout and "space/" not in proc.stdout


def test_cfg_job_resolve_prints_the_config(tmp_path):
    proc = run_cli("--cfg", "job", "--resolve", "model.hidden=4", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "\nmodel:\n  hidden: 4\n  budget: null\n" in proc.stdout
    assert "output_dir: null" in proc.stdout  # no run is made


def test_the_progress_bar_counts_steps_not_epochs(make_cfg, tmp_path):
    """The bar read `Epoch 0/-2` (one endless epoch, max_epochs -1)."""
    from rnncap.core.build import StepProgressBar, build_trainer

    cfg = make_cfg("trainer.enable_progress_bar=true", "trainer.max_steps=70")
    trainer = build_trainer(cfg, tmp_path, None, None)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, StepProgressBar)
    bar.setup(trainer, None, stage="fit")  # what fit does first
    assert bar.total_train_batches == 70
    assert bar._get_train_description(trainer.current_epoch).strip() == "steps"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_of_the_umask(tmp_path, mask):
    """The atomic writer's temporary file is 0600; the result gets what `open` would give."""
    from rnncap.base.io import write_atomic, write_json_atomic

    before = os.umask(mask)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"bits": 1.0})
        write_atomic(tmp_path / "w.pt", lambda f: f.write(b"x"), binary=True)
    finally:
        os.umask(before)
    for name in ("metrics.json", "w.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
