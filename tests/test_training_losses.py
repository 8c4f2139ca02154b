"""first_loss and final_loss: written by every run, copied by the sweeper into its trials'
user attrs, read by ``rnncap trainability --diverged loss_above_start``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from conftest import CONF

from hydra_plugins.rnncap_optuna._trials import member_outcome, record
from rnncap.analysis import trainability as tr
from rnncap.core.run import train


def test_sweeper_copies_a_runs_losses_and_trainability_counts_a_rise(make_cfg, tmp_path):
    """A real run's losses reach its trial as ``metrics.first_loss``/``metrics.final_loss``;
    a trial whose final loss is above its first diverged by loss_above_start only."""
    cfg = make_cfg("model.hidden=4")
    train(cfg)
    run = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert 0 < run["final_loss"] < run["first_loss"]  # 20 steps of Adam on 32 samples
    risen = {**run, "first_loss": 0.5, "final_loss": 0.9}  # finite, trained, but above start
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="rnd-rnn-d1", storage=url, direction="maximize")
    for key, value in {"cell": "rnn", "depth": 1, "sampler": "RandomSampler"}.items():
        study.set_user_attr(key, value)
    for metrics in (run, risen):
        record(study, study.ask(), member_outcome(metrics, metrics["bits"]), tmp_path)
    attrs = study.trials[0].user_attrs
    assert (attrs["metrics.first_loss"], attrs["metrics.final_loss"]) == (
        run["first_loss"],
        run["final_loss"],
    )
    (loaded,) = tr.load_studies(url)
    assert loaded.above_start == [False, True]
    assert loaded.feasible_by("nonfinite") == [True, True]
    assert loaded.feasible_by("loss_above_start") == [True, False]
    (row,) = tr.infeasible_table([loaded], CONF)
    assert (row["diverged"], row["recorded"], row["above_start"]) == (0, 2, 1)
