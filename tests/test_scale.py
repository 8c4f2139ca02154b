"""Scaling out and holding up: step-indexed batches, DDP on CPU processes, the -m refusal,
the SLURM launcher config, resume after SIGKILL, and same-seed determinism across processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, ROOT, compose_cfg, without_wall
from hydra import compose, initialize_config_dir
from test_train import cli_env, run_cli

from rnncap.base.errors import ConfigError
from rnncap.core.run import train
from rnncap.core.validate import check_launch
from rnncap.tasks.base import StepBatches

TINY = ["task.samples=48", "task.input_dim=7", "task.steps=3", "model.hidden=6"]


# -- the batches of each step ------------------------------------------------------------------
def test_full_batch_shards_partition_every_step():
    ranks = [list(islice(StepBatches(10, None, seed=0, rank=r, world=3), 3)) for r in range(3)]
    for step in range(3):
        shards = [ranks[r][step] for r in range(3)]
        assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_minibatches_follow_seeded_permutations_across_pass_boundaries():
    perm = [np.random.default_rng((5, 1, p)).permutation(10).tolist() for p in range(2)]
    batches = list(islice(StepBatches(10, 4, seed=5), 3))
    assert batches == [perm[0][0:4], perm[0][4:8], perm[0][8:10] + perm[1][0:2]]
    assert list(islice(StepBatches(10, 4, seed=6), 3)) != batches


def test_iteration_starts_at_the_global_step():
    """A resumed run (global step 7) sees the batches an uninterrupted run sees from step 7."""
    whole = list(islice(StepBatches(20, 6, seed=1), 12))
    resumed = list(islice(StepBatches(20, 6, seed=1, start_step=lambda: 7), 5))
    assert resumed == whole[7:12]
    shard = list(islice(StepBatches(20, 6, seed=1, rank=1, world=2, start_step=lambda: 7), 5))
    assert shard == [b[1::2] for b in whole[7:12]]


# -- DDP ---------------------------------------------------------------------------------------
def read(path: Path) -> dict:
    """A run's metrics.json less its one timed value (the convergence rows' wall seconds)."""
    return without_wall(json.loads((path / "metrics.json").read_text()))


def test_ddp_cpu_two_processes_match_one_process(tmp_path, monkeypatch):
    """2 gloo processes, each on half of every batch, train the model one process trains on the
    whole batch; rank 0 alone scores the whole set, writes metrics.json and logs to W&B."""
    args = [*TINY, "task.samples=45", "trainer.max_steps=30", "trainer.val_check_interval=10"]
    monkeypatch.setenv("WANDB_SILENT", "true")
    proc = run_cli("hardware=ddp_cpu", "logger=wandb", *args, "hydra.run.dir=ddp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr + proc.stdout  # two processes (gloo: nccl needs GPUs)
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").exists()  # rank 1 ran
    assert list(tmp_path.glob("**/metrics.json")) == [tmp_path / "ddp" / "metrics.json"]
    assert len(list((tmp_path / "ddp" / "wandb").glob("offline-run-*"))) == 1
    ddp = read(tmp_path / "ddp")
    single = compose_cfg(args, tmp_path / "single")
    train(single)
    one = read(tmp_path / "single")
    # 45 samples: shards of 23 and 22, weighted by their share of the batch
    assert ddp["accuracy"] == one["accuracy"]
    assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-5)


@pytest.mark.slow
def test_ddp_spawn_on_cpu_matches_one_process(tmp_path):
    args = [*TINY, "trainer.max_steps=30", "trainer.val_check_interval=10"]
    proc = run_cli(
        "hardware=ddp_cpu", "hardware.strategy=ddp_spawn", *args, "hydra.run.dir=sp", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = compose_cfg(args, tmp_path / "single")
    train(single)
    assert read(tmp_path / "sp")["loss"] == pytest.approx(read(tmp_path / "single")["loss"])


@pytest.mark.parametrize(
    ("multirun", "strategy", "devices", "launcher", "refused"),
    [
        (True, "ddp", 2, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", True),
        (
            True,
            "ddp",
            2,
            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
            False,
        ),
        (True, "ddp_spawn", 2, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", False),
        (True, "ddp", 1, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", False),
        (False, "ddp", 2, "", False),
    ],
)
def test_multirun_refuses_only_ddp_that_reruns_the_command(
    make_cfg, multirun, strategy, devices, launcher, refused
):
    cfg = make_cfg(
        "hardware=ddp_cpu", f"hardware.strategy={strategy}", f"hardware.devices={devices}"
    )
    if refused:
        with pytest.raises(ConfigError, match="use hardware=ddp_spawn.*hydra/launcher=slurm"):
            check_launch(cfg, multirun, launcher)
    else:
        check_launch(cfg, multirun, launcher)


def test_multirun_with_ddp_is_refused_from_the_command_line(tmp_path):
    proc = run_cli("-m", "hardware=ddp_cpu", "depth=1,2", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert proc.returncode == 2  # every point refused, each with the reason, nothing run
    assert "-m with hardware.strategy=ddp on hardware.devices=2" in proc.stderr
    assert proc.stderr.rstrip().endswith("error: every point of the grid was refused: nothing ran")
    assert not list(tmp_path.glob("sw/**/metrics.json"))


def test_slurm_launcher_config_takes_its_sizes_from_hardware():
    overrides = ["hydra/launcher=slurm", "hardware=ddp", "hardware.devices=4"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 1)
    assert launcher.timeout_min > 0 and "partition" in launcher
    check_launch(cfg, True, launcher._target_)  # multi-GPU DDP inside a SLURM sweep is fine


# -- resume after SIGKILL ----------------------------------------------------------------------
def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def kill_after_first_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


@pytest.mark.parametrize("batch", ["full", "minibatch"])
def test_run_killed_mid_training_resumes_to_the_same_metrics(tmp_path, batch):
    """SIGKILL right after the first checkpoint (step 130: mid-epoch, val_check_interval=100), then
    the same command again: it resumes and ends with the uninterrupted run's exact metrics."""
    args = [*TINY, "trainer.max_steps=1500", "trainer.val_check_interval=100"]
    args += ["trainer.checkpoint_every=130"]
    if batch == "minibatch":
        args += ["task.batch_size=20", "logger=wandb"]  # 20 does not divide 48: batches straddle
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    kill_after_first_checkpoint(start_cli(*args, "hydra.run.dir=run", cwd=tmp_path), ckpt)
    assert not (run / "metrics.json").exists()
    state = torch.load(ckpt, weights_only=True)  # plain data only: no OmegaConf objects
    assert 130 <= state["global_step"] < 1500 and state["global_step"] % 100 != 0

    proc = start_cli(*args, "hydra.run.dir=run", cwd=tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert f"resuming from checkpoint {ckpt}" in (run / "train.log").read_text()
    resumed = read(run)

    train(compose_cfg(args, tmp_path / "whole"))
    assert resumed == read(tmp_path / "whole")
    if batch == "minibatch":  # the W&B run resumed by its id: both parts carry it
        run_id = (run / "wandb_id.txt").read_text().strip()
        parts = list((run / "wandb").glob("offline-run-*"))
        assert len(parts) == 2 and all(p.name.endswith(run_id) for p in parts)


# -- determinism -------------------------------------------------------------------------------
def test_same_seed_same_metrics_in_fresh_processes(tmp_path):
    """Minibatch shuffling, data and initialisation all follow the seed: two fresh processes
    agree exactly; another seed does not."""
    args = [*TINY, "task.batch_size=16", "trainer.max_steps=60", "trainer.val_check_interval=20"]
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        proc = run_cli(*args, f"seed={seed}", f"hydra.run.dir={name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b, c = (read(tmp_path / n) for n in "abc")
    assert a == b
    assert a["loss"] != c["loss"]
