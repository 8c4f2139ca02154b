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

import optuna
import pytest
import wandb_workspaces.reports.v2 as wr
from conftest import ROOT
from wandb_workspaces import expr

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


def item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def logged(wandb_file: Path) -> tuple[set[str], list[dict[str, Any]], str]:
    """What one offline run logged: its keys (``config:<key>``, ``summary:<key>``,
    ``history:<key>``, ``run:Group`` / ``run:JobType`` when set), its history rows and its
    job type."""
    keys: set[str] = set()
    rows: list[dict[str, Any]] = []
    job_type = ""
    for record in records(wandb_file):
        kind = record.WhichOneof("record_type")
        config = {"run": record.run.config.update, "config": record.config.update}.get(kind, [])
        for item in config:
            keys |= {f"config:{k}" for k in flat(json.loads(item.value_json), item.key)}
        if kind == "run":
            job_type = record.run.job_type or job_type
            keys |= {"run:Group"} if record.run.run_group else set()
            keys |= {"run:JobType"} if record.run.job_type else set()
        if kind == "summary":
            keys |= {f"summary:{item_key(item)}" for item in record.summary.update}
        if kind == "history":
            row = {item_key(item): json.loads(item.value_json) for item in record.history.item}
            keys |= {f"history:{k}" for k in row if not k.startswith("_")}
            rows.append(row)
    return keys, rows, job_type


def run(cmd: list[str], cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    env |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow  # five real runs with W&B offline: about a minute on 2 cores
def test_every_panel_reads_keys_that_real_offline_runs_log(tmp_path):
    train = [sys.executable, str(ROOT / "train.py")]
    run([*train, "-m", *TINY, "sweep=random", "hydra.sweeper.n_trials=3", "task.samples=24",
         "task.steps=3", "hydra.sweep.dir=runs/tune"], tmp_path)  # fmt: skip
    run([*train, *TINY, "task=memory", "task.samples=32", "task.eval_samples=16",
         "task.mc_delays=0",
         "hydra.run.dir=runs/memory"], tmp_path)  # fmt: skip
    rnncap = [sys.executable, "-m", "rnncap.cli"]
    run([*rnncap, "fit", "--runs", "runs", "--out", "cap", "--metrics", "cap.json", "--boot",
         "10", "--wandb", "offline", "--experiment", "g1"], tmp_path)  # fmt: skip
    storage = "sqlite:///results/tune/studies.db"  # the sweeper's default, where the tuner ran
    run([*rnncap, "trainability", "--storage", storage, "--out", "tr", "--depths", "1",
         "--wandb", "offline", "--experiment", "g1"], tmp_path)  # fmt: skip
    analysis = [logged(f) for f in tmp_path.glob("results/wandb/wandb/offline-run-*/*.wandb")]
    files = {
        "tuner": [logged(f) for f in tmp_path.glob("runs/tune/*/wandb/offline-run-*/*.wandb")],
        "train.py": [logged(f) for f in tmp_path.glob("runs/memory/wandb/offline-run-*/*.wandb")],
        "fit": [run for run in analysis if run[2] == "fit"],
        "trainability": [run for run in analysis if run[2] == "trainability"],
    }
    assert all(files.values()), files
    keys = {kind: set().union(*(run[0] for run in found)) for kind, found in files.items()}
    every = set().union(*keys.values())
    views = [dashboard.build_workspace("e", "rnncap", "g1")]
    views.append(dashboard.build_report("e", "rnncap", "g1", depths=(1, 2)))
    for view in views:
        for panel, used in dashboard.panel_keys(view).items():
            assert set(used) <= every, f"{panel}: {set(used) - every} logged by no run"
    # the plain keys of a training run, from train.py and the tuner alike
    plain = {f"config:{k}" for k in ("cell.name", "task.name", "depth", "params", "hidden")}
    plain |= {"config:seed", "config:trial", "summary:final/bits", "summary:final/diverged"}
    assert plain <= keys["tuner"]
    assert plain - {"summary:final/bits"} | {"summary:final/mse"} <= keys["train.py"]
    assert "config:cell" in keys["fit"] and "summary:depth1/mean_bits_per_param" in keys["fit"]
    # one trainability run per study: its curves against trial equal the study's own trials
    (study_run,) = files["trainability"]
    curve = {"config:cell.name", "config:depth", "config:task.name", "config:sampler"}
    curve |= {"run:Group", "run:JobType", "summary:diverged_share"}
    curve |= {f"history:{k}" for k in ("trial", "best_so_far", "running_median", "objective")}
    assert curve <= study_run[0]
    study = optuna.load_study(
        study_name=None, storage=f"sqlite:///{tmp_path}/results/tune/studies.db"
    )
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    assert len(values) == 3 and None not in values
    assert [row["trial"] for row in study_run[1]] == [0, 1, 2]
    assert [row["objective"] for row in study_run[1]] == values
    assert [row["best_so_far"] for row in study_run[1]] == [max(values[: i + 1]) for i in range(3)]
    medians = [values[0], (values[0] + values[1]) / 2, sorted(values)[1]]
    assert [row["running_median"] for row in study_run[1]] == pytest.approx(medians)


def test_the_spec_round_trips_through_the_librarys_model():
    workspace = dashboard.build_workspace("e", "rnncap", "g1", "loss")
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
    keys = dashboard.panel_keys(again)
    assert "summary:final/loss" in keys["Tuning: tuned settings against loss"]
    assert keys["Trainability: running median objective against trial"] == [
        "history:trial",
        "history:running_median",
    ]
    assert keys["run set"] == ["run:Group"]


def test_the_report_has_a_filtered_grid_per_depth_and_round_trips():
    report = dashboard.build_report("e", "rnncap", "g1", depths=(1, 8), objective="loss")
    spec = dashboard.to_spec(report)
    again = dashboard.from_spec(spec)
    assert isinstance(again, wr.Report) and dashboard.to_spec(again) == spec
    keys = dashboard.panel_keys(again)
    assert keys == dashboard.panel_keys(report)
    grids = [b for b in again.blocks if isinstance(b, wr.PanelGrid)]
    filters = [(g.runsets[0].name, g.runsets[0].filters) for g in grids]
    # capacity and the tuner curves and the diverged share per depth, memory and tuning once
    assert [name for name, _ in filters] == [
        "capacity, depth 1",
        "capacity, depth 8",
        "memory",
        "tuner studies, depth 1",
        "random settings, depth 1",
        "tuner studies, depth 8",
        "random settings, depth 8",
        "tuned runs",
    ]
    depth8 = dict(filters)["tuner studies, depth 8"]
    leaves = {(f.key.section, f.key.name, f.op, f.value)
              for f in expr.string_to_filterexpr_list(depth8)}  # fmt: skip
    assert leaves == {
        ("run", "Group", "=", "g1"),
        ("run", "JobType", "=", "trainability"),
        ("config", "depth", "=", 8),
        ("config", "sampler", "!=", "RandomSampler"),
    }
    assert keys["Trainability / depth 8: best objective so far against trial"] == [
        "history:trial",
        "history:best_so_far",
    ]
    assert all(g.runsets[0].groupby for g in grids)  # one line / bar per cell
    assert not any(g.runsets[0].project for g in grids)  # the report's own project


def test_without_a_key_it_writes_the_specs_and_says_how_to_publish(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    out = tmp_path / "results" / "dashboard"
    offline_run(tmp_path / "results", "g1")
    cli.main(["dashboard", "--group", "g1", "--out", str(out), "--runs-dir",
              str(tmp_path / "results"), "--wandb", "online", "--depths", "1", "2"])  # fmt: skip
    said = capsys.readouterr().out
    files = f"{out / 'workspace.json'} {out / 'report.json'}"
    assert f"--spec {files} --wandb online" in said and "no API key" in said
    assert dashboard.from_spec((out / "workspace.json").read_text()).project == "rnncap"
    report = dashboard.from_spec((out / "report.json").read_text())
    assert isinstance(report, wr.Report) and report.title == "rnncap g1"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "workspace.json"]
    cli.main(["dashboard", "--spec", str(out / "report.json"), "--wandb", "online"])
    assert "publish them later" in capsys.readouterr().out  # still no key: nothing saved


def offline_run(root: Path, group: str) -> None:
    """A real W&B run of ``group``, logged offline under ``root``."""
    import wandb

    root.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(silent=True, console="off")
    wandb.init(project="rnncap", group=group, mode="offline", dir=str(root), settings=settings)
    wandb.finish()
    wandb.teardown()  # no W&B state left in the test process for the runs of later tests


def test_a_group_without_runs_is_one_line_and_writes_nothing(tmp_path):
    """The project defaults to the configs' (rnncap); a group no run has is refused."""
    offline_run(tmp_path / "results", "capacity-small")
    out = tmp_path / "views"
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_SILENT": "true"}
    for group, code in [("capacity-smal", 2), ("capacity-small", 0)]:
        cmd = [sys.executable, "-m", "rnncap.cli", "dashboard", "--group", group, "--out", str(out)]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == code, done.stderr
    assert out.is_dir()  # the second: its specs written
    refused = subprocess.run([*cmd[:-3], "capacity-smal"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.stderr == "error: --group capacity-smal: no W&B run of this group in results/\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--project", "p", "--depths", "0"], "error: --depths"),
        (["--spec", "missing.json"], "error: --spec missing.json"),
        (["--spec", "bad.json"], "error: --spec bad.json: not a workspace or report spec"),
    ],
)
def test_bad_dashboard_arguments_are_one_line(tmp_path, monkeypatch, capsys, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"spec": {"blocks": 3}}')
    with pytest.raises(SystemExit) as done:
        cli.main(["dashboard", *args, "--out", "views"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(says) and "\n" not in err and not (tmp_path / "views").exists()
