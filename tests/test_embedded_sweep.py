"""sweep=embedded, the embedded default's narrowed capacity search: b from 3x to 6x the
budget, full-batch Adam, every searched key per member (a round of K trials is one population
of K), and the gated cells' own rate range and gate bias."""

from __future__ import annotations

import optuna
import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.rnncap_optuna import _impl
from rnncap.core.population import MEMBER_KEYS


def space(cell: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["sweep=embedded", "task=capacity", f"cell={cell}", "model.budget=400"],
            return_hydra_config=True,
        )
    assert cfg.optimizer._target_.endswith("Adam") and cfg.task.batch_size is None
    return OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)


@pytest.mark.parametrize("cell", ["rnn", "irnn", "ugrnn", "gru", "lstm", "intersection"])
def test_embedded_space_is_narrow_per_member_and_gated_cells_tune_their_gate(cell):
    params = space(cell)
    assert params["task.samples"] == {"type": "int", "low": 1200, "high": 2400, "log": True}
    assert set(params) <= set(MEMBER_KEYS.values())
    gated = cell in {"gru", "lstm", "intersection"}
    assert ("cell.gate_bias" in params) == gated
    assert params["optimizer.lr"]["low"] == (1.0e-2 if gated else 5.0e-3)
    parsed, _ = _impl.parse_search_space(params, [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    chosen = [_impl.suggest(study.ask(), parsed, {}) for _ in range(32)]
    assert [len(g) for g in _impl.group_trials(chosen, 16)] == [16, 16]
