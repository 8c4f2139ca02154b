"""Capacity under reduced precision: finished capacity runs re-scored with rounded weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT
from omegaconf import OmegaConf

from rnncap.analysis.precision import PRECISIONS, round_weights
from rnncap.analysis.rescore import NotACapacityRun, rescore
from rnncap.cli import main
from rnncap.core.run import WEIGHTS_FILE, train
from rnncap.experiments import grid_commands


def finished_run(make_cfg, folder: Path, *overrides: str) -> Path:
    """A tiny capacity run trained in-process into ``folder``, its config saved as Hydra
    saves it (``.hydra/config.yaml``)."""
    cfg = make_cfg("cell=gru", "model.hidden=4", *overrides)
    cfg.output_dir = str(folder)
    train(cfg)
    (folder / ".hydra").mkdir()
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    return folder


def test_rescore_reproduces_every_members_bits_and_scores_each_format(
    make_cfg, tmp_path, cell_configs
):
    run = finished_run(make_cfg, tmp_path / "runs" / "p", "model.population=3")
    metrics = json.loads((run / "metrics.json").read_text())
    recorded = metrics["members"]
    result = rescore([tmp_path / "runs"], tmp_path / "out", list(PRECISIONS), cell_configs)
    assert result["runs"] == 1 and result["members"] == 3
    assert result["fp32_mismatches"] == 0
    rows = list(csv_rows(tmp_path / "out" / "scores.csv"))
    assert len(rows) == 3 * len(PRECISIONS)
    for row in rows:
        bits, params = float(row["bits"]), int(row["params"])
        expected = bits / (params * PRECISIONS[row["precision"]])
        assert float(row["bits_per_weight_bit"]) == pytest.approx(expected, rel=1e-12)
        stored, scales = float(row["stored_bits"]), float(row["scale_bits"])
        assert stored == pytest.approx(params * PRECISIONS[row["precision"]] + scales)
        assert float(row["bits_per_stored_bit"]) == pytest.approx(bits / stored, rel=1e-12)
        assert (scales > 0) == (row["precision"] not in ("fp32", "bf16", "fp16"))
        if row["precision"] == "fp32":  # the same number as the run's own
            assert bits == pytest.approx(recorded[int(row["member"])]["bits"], abs=1e-9)
    by_format = result["bits_per_param"]["gru"]["32-true"]
    assert set(by_format) == set(PRECISIONS)
    best = max(m["bits"] for m in recorded)  # one size: the slope is its best member's
    assert by_format["fp32"]["bits_per_param"] == pytest.approx(best / metrics["params"])
    stored = {r["precision"]: float(r["stored_bits"]) for r in rows}  # one size
    for name, entry in by_format.items():  # one size: the slope through it
        assert entry["bits_per_stored_bit"] == pytest.approx(
            entry["bits_per_param"] * metrics["params"] / stored[name]
        )
        assert entry["bits_per_weight_bit"] == pytest.approx(
            entry["bits_per_param"] / PRECISIONS[name]
        )
    assert by_format["int8_row"]["scale_bits_per_param"] > by_format["int8"]["scale_bits_per_param"]
    best_format = result["most_per_stored_bit"]["32-true"]["gru"]
    assert best_format["scales_counted"] == max(
        by_format, key=lambda f: by_format[f]["bits_per_stored_bit"]
    )
    assert (tmp_path / "out" / "precision.png").stat().st_size > 10_000


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        yield from csv.DictReader(f)


def test_weights_already_on_a_formats_grid_lose_nothing_at_that_format(
    make_cfg, tmp_path, cell_configs
):
    run = finished_run(make_cfg, tmp_path / "runs" / "solo")
    saved = torch.load(run / WEIGHTS_FILE, weights_only=True)
    model = saved["members"][0]
    snapped = {k: round_weights(v, "int4") for k, v in model.items()}
    torch.save({"members": [snapped]}, run / WEIGHTS_FILE)
    result = rescore(
        [tmp_path / "runs"], tmp_path / "out", ["fp32", "int4", "ternary"], cell_configs
    )
    scores = {r["precision"]: float(r["bits"]) for r in csv_rows(tmp_path / "out" / "scores.csv")}
    assert scores["int4"] == scores["fp32"]  # rounding is idempotent on its own grid
    assert result["fp32_mismatches"] == 1  # the snapped weights are not the trained ones
    assert math.isfinite(scores["ternary"])


def refused(tmp_path: Path, *args: str, capsys) -> str:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["precision", *args, "--out", str(out)])
    assert stop.value.code == 2
    assert not out.exists()  # nothing written that looks finished
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    return err


def test_runs_that_are_not_finished_capacity_runs_are_refused(make_cfg, tmp_path, capsys):
    run = finished_run(make_cfg, tmp_path / "runs" / "capacity")
    memory = tmp_path / "runs" / "memory"
    memory.mkdir()
    (memory / "metrics.json").write_text(json.dumps({"task": "memory", "status": "ok"}))
    err = refused(tmp_path, "--runs", str(tmp_path / "runs"), capsys=capsys)
    assert "task=memory run, not a capacity run" in err
    (memory / "metrics.json").unlink()
    (run / WEIGHTS_FILE).unlink()
    assert "has no weights.pt" in refused(tmp_path, "--runs", str(run), capsys=capsys)
    assert "no finished runs" in refused(tmp_path, "--runs", str(memory), capsys=capsys)
    err = refused(tmp_path, "--runs", str(run), "--precisions", "int2", capsys=capsys)
    assert "--precisions int2: unknown" in err
    with pytest.raises(NotACapacityRun):
        rescore([run], tmp_path / "out", ["fp32"])


def test_the_precision_grid_is_the_capacity_grid_trained_in_bf16_mixed():
    grids = yaml.safe_load((ROOT / "params.yaml").read_text())["grids"]
    (command,) = grid_commands(ROOT / "params.yaml", "precision")
    capacity = grid_commands(ROOT / "params.yaml", "capacity")[0]
    trained = grids["precision"]
    assert command[-1] == f"hardware.precision={trained['precision']}"
    assert "hydra.sweep.dir=results/precision/runs/capacity" in command
    assert f"depth={','.join(map(str, trained['depths']))}" in command
    assert f"cell={','.join(trained['cells'])}" in command
    narrowed = ("cell=", "depth=", "hydra.sweep", "hydra.sweeper.s")
    same = [a for a in capacity if not a.startswith(narrowed)]
    assert set(same) <= set(command)  # every other setting as the capacity grid has it


def test_save_weights_false_writes_none_and_trainability_studies_set_it(make_cfg, tmp_path):
    cfg = make_cfg("model.hidden=3", "save_weights=false")
    train(cfg)
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / WEIGHTS_FILE).exists()
    studies = grid_commands(ROOT / "params.yaml", "trainability")
    assert studies and all("save_weights=false" in args for args in studies)
