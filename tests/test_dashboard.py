"""``rnncap dashboard``: the W&B workspace's panels read only keys that real offline runs log
(train.py, a tuner sweep, ``rnncap fit``; read back from their ``.wandb`` files), the spec
round-trips through the library's own model, and bad input is one line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from rnncap import cli
from rnncap.analysis import dashboard

TINY = [
    "model.hidden=4",
    "task.input_dim=6",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.checkpoint_every=null",
    "logger=wandb",
    "experiment_name=g1",
]
BLOCK, HEADER = 32768, 7  # the .wandb file: LevelDB-style log blocks and chunk headers


def records(path: Path):
    """The protobuf records of an offline run's ``.wandb`` file (wandb >= 0.19 reads it in Go
    only): 32 KiB blocks of chunks, each crc32c (4 bytes), length (2, little-endian), type (1:
    full, 2: first, 3: middle, 4: last) and data, after a 7-byte ``:W&B`` header."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            break
        parts += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record
            parts = b""


def flat(value: Any, prefix: str) -> dict[str, Any]:
    """W&B's dotted config keys: {"cell": {"name": "rnn"}} -> {"cell.name": "rnn"}."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}.{key}").items()}


def logged_keys(wandb_file: Path) -> set[str]:
    """``config:<key>`` and ``summary:<key>`` of everything one offline run logged."""
    keys: set[str] = set()
    for record in records(wandb_file):
        kind = record.WhichOneof("record_type")
        config = {"run": record.run.config.update, "config": record.config.update}.get(kind, [])
        for item in config:
            keys |= {f"config:{k}" for k in flat(json.loads(item.value_json), item.key)}
        if kind == "summary":
            keys |= {
                f"summary:{item.key or '/'.join(item.nested_key)}" for item in record.summary.update
            }
    return keys


def run(cmd: list[str], cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    env |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow  # four real runs with W&B offline: about a minute on 2 cores
def test_every_panel_reads_keys_that_real_offline_runs_log(tmp_path):
    train = [sys.executable, str(ROOT / "train.py")]
    run([*train, "-m", *TINY, "sweep=random", "hydra.sweeper.n_trials=1", "task.samples=24",
         "task.steps=3", "hydra.sweep.dir=runs/tune"], tmp_path)  # fmt: skip
    run([*train, *TINY, "task=memory", "task.samples=32", "task.eval_samples=16",
         "task.mc_delays=0",
         "hydra.run.dir=runs/memory"], tmp_path)  # fmt: skip
    rnncap = [sys.executable, "-m", "rnncap.cli"]
    run([*rnncap, "fit", "--runs", "runs", "--out", "cap", "--metrics", "cap.json", "--boot",
         "10", "--wandb", "offline", "--experiment", "g1"], tmp_path)  # fmt: skip
    files = {
        "tuner": list(tmp_path.glob("runs/tune/0/wandb/offline-run-*/*.wandb")),
        "train.py": list(tmp_path.glob("runs/memory/wandb/offline-run-*/*.wandb")),
        "fit": list(tmp_path.glob("results/wandb/wandb/offline-run-*/*.wandb")),
    }
    assert all(files.values()), files
    logged = {kind: set().union(*map(logged_keys, found)) for kind, found in files.items()}
    every = set().union(*logged.values())
    workspace = dashboard.build_workspace("e", "rnncap", "g1")
    for panel, keys in dashboard.panel_keys(workspace).items():
        assert set(keys) <= every, f"{panel}: {set(keys) - every} logged by no run"
    # the plain keys of a training run, from train.py and the tuner alike
    plain = {f"config:{k}" for k in ("cell.name", "task.name", "depth", "params", "hidden")}
    plain |= {"config:seed", "config:trial", "summary:final/bits", "summary:final/diverged"}
    assert plain <= logged["tuner"]
    assert plain - {"summary:final/bits"} | {"summary:final/mse"} <= logged["train.py"]
    assert "config:cell" in logged["fit"] and "summary:bits_per_param" in logged["fit"]


def test_the_spec_round_trips_through_the_librarys_model():
    workspace = dashboard.build_workspace("e", "rnncap", "g1", "loss", maximize=False)
    spec = dashboard.to_spec(workspace)
    again = dashboard.from_spec(spec)
    assert dashboard.to_spec(again) == spec
    assert [s.name for s in again.sections] == [
        "Capacity",
        "Per-unit memory",
        "Trainability",
        "Tuning",
        "Runs",
    ]
    assert dashboard.panel_keys(again) == dashboard.panel_keys(workspace)
    assert (
        "summary:final/loss" in dashboard.panel_keys(again)["Tuning: tuned settings against loss"]
    )


def test_without_a_key_it_writes_the_spec_and_says_how_to_publish(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    out = tmp_path / "results" / "dashboard" / "ws.json"
    cli.main(["dashboard", "--project", "rnncap", "--group", "g1", "--out", str(out),
              "--wandb", "online"])  # fmt: skip
    said = capsys.readouterr().out
    assert f"--spec {out} --wandb online" in said and "no API key" in said
    assert dashboard.from_spec(out.read_text()).project == "rnncap"
    assert [p.name for p in out.parent.iterdir()] == ["ws.json"]  # no temporary left


def test_dashboard_without_a_project_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "ws.json"
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "rnncap.cli", "dashboard", "--group", "g1", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: --project") and not out.exists()
