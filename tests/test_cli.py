"""The `rnncap` command line: every subcommand, discovered from its parser, starts without torch
and says what it does; the grid commands (train-grid, analyse, summary) cover every grid of
params.yaml; bad input is one line and exit 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from rnncap.cli import build_parser, main

SCRIPT = Path(sys.executable).parent / "rnncap"  # [project.scripts] in pyproject.toml


def subcommands() -> list[str]:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


HELP_WITHOUT_TORCH = """
import contextlib, io, sys
from rnncap.cli import main
for argv in [[], *([c] for c in sys.argv[1:])]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    print(out.getvalue())
heavy = [m for m in ("torch", "pytorch_lightning", "lightning", "matplotlib") if m in sys.modules]
print("heavy:", heavy)
"""


def test_every_subcommand_starts_without_torch_and_says_what_it_does():
    """`rnncap --help` and `rnncap <cmd> --help` of every subcommand import no torch (what made
    them take seconds) and show defaults as written, never `PosixPath(...)`."""
    commands = subcommands()
    assert {"train-grid", "analyse", "summary", "fit", "plot", "precision"} <= set(commands)
    proc = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH, *commands], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert proc.stdout.rstrip().endswith("heavy: []"), proc.stdout[-300:]
    main_help, *helps = proc.stdout.split("usage: rnncap")[1:]
    assert len(helps) == len(commands)
    for command, text in zip(commands, helps, strict=True):
        assert f"\n    {command}" in main_help, command  # listed, with its one line
        assert text.startswith(f" {command}") and "PosixPath" not in text, (command, text)


def test_the_installed_console_script_runs_and_refuses_bad_input_in_one_line():
    proc = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and all(f"    {c}" in proc.stdout for c in subcommands())
    bad = subprocess.run([SCRIPT, "fit", "--runs", str(ROOT / "no")], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr == f"error: --runs {ROOT / 'no'}: no such folder\n"


def test_fit_on_a_folder_without_runs_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    out = tmp_path / "tables"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--runs", str(tmp_path / "runs"), "--out", str(out), "--wandb", "disabled",
              "--metrics", str(tmp_path / "m.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "no finished run" in err
    assert not out.exists() and not (tmp_path / "m.json").exists()


GRIDS = sorted(yaml.safe_load((ROOT / "params.yaml").read_text())["grids"])


@pytest.mark.parametrize("grid", GRIDS)
def test_every_grid_trains_and_analyses_into_its_own_folder(grid, monkeypatch, capsys):
    """Dry runs: the training commands write under results/GRID/runs, the analysis commands
    are `rnncap` commands that parse, reading the runs and writing results/GRID/report."""
    monkeypatch.chdir(ROOT)
    main(["train-grid", grid, "--dry-run"])
    trained = capsys.readouterr().out.splitlines()
    assert trained and all(line.startswith("run: ") for line in trained)
    train = [line for line in trained if line.startswith("run: python train.py -m ")]
    assert train and all(f"hydra.sweep.dir=results/{grid}/runs" in line for line in train)
    main(["analyse", grid, "--dry-run"])
    analysis = [
        line.removeprefix("run: rnncap ").split() for line in capsys.readouterr().out.splitlines()
    ]
    for argv in analysis:
        build_parser().parse_args(argv)  # a command the CLI has, with its options
        assert any(a.startswith(f"results/{grid}/report") for a in argv), argv
    assert any(f"results/{grid}/runs" in a for argv in analysis for a in argv)


def test_summary_prints_the_default_grids_bits_per_parameter(tmp_path, monkeypatch, capsys):
    report = tmp_path / "results" / "capacity" / "report"
    report.mkdir(parents=True)
    gru = {"mean_bits_per_param": 4.1, "mean_lo": 3.9, "mean_hi": 4.3, "slope": 4.0, "sizes": 3}
    (report / "summary.json").write_text(json.dumps({"capacity": {"gru": {"depth1": gru}}}))
    (tmp_path / "conf").symlink_to(ROOT / "conf")  # how a cell is shown
    monkeypatch.chdir(tmp_path)
    main(["summary", "capacity", "--params", str(ROOT / "params.yaml")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{report.relative_to(tmp_path)}/summary.json (rnncap analyse capacity):"
    assert lines[-1].split() == ["GRU", "1", "4.10", "[3.90,", "4.30]", "4.00", "-", "3", "0", "0"]


def test_dvc_metrics_show_is_a_few_readable_columns(tmp_path):
    """`dvc metrics show`, the summary the README offers: bits per parameter per cell, no
    "failed to load" line."""
    from test_pipeline import dvc, make_repo

    repo = make_repo(tmp_path)
    metrics = repo / "results" / "capacity" / "report" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"gru": {"d1": 4.1}, "rnn": {"d1": 4.5}}))
    shown = dvc(repo, "metrics", "show")
    assert "failed" not in shown.lower()
    header, row = shown.splitlines()[:2]
    assert header.split() == ["Path", "gru.d1", "rnn.d1"]
    assert row.split() == ["results/capacity/report/metrics.json", "4.1", "4.5"]


def test_analyse_writes_every_declared_output_of_the_default_grid(tmp_path, monkeypatch):
    """`rnncap analyse capacity` on hand-made runs: fit and plot into results/capacity/report,
    every file its experiment declares, the bits per parameter of `dvc metrics show` among
    them."""
    import numpy as np
    from test_analysis import synthetic_grid, write_runs

    from rnncap.experiments.capacity import EXPERIMENT

    write_runs(
        tmp_path / "results/capacity/runs", synthetic_grid({"gru": 4.0}, np.random.default_rng(0))
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text()) | {"wandb": "disabled"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    monkeypatch.chdir(tmp_path)
    main(["analyse", "capacity"])
    report = tmp_path / "results/capacity/report"
    assert sorted(p.name for p in report.iterdir()) == sorted(EXPERIMENT.outputs)
    bits = json.loads((report / "metrics.json").read_text())
    assert list(bits) == ["gru"] and bits["gru"]["d1"] == pytest.approx(4.0, abs=0.3)
