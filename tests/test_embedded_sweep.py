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


def round_sizes(params: dict, population: int) -> list[int]:
    """The populations that two rounds of random draws from ``params`` train as."""
    parsed, _ = _impl.parse_search_space(params, [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    chosen = [_impl.suggest(study.ask(), parsed, {}) for _ in range(2 * population)]
    return [len(g) for g in _impl.group_trials(chosen, population)]


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
    assert round_sizes(params, 16) == [16, 16]


def test_annealed_space_scales_with_the_budget_and_the_top_rung():
    """sweep=annealed: b 3.5x-5x the budget, minibatches 0.6x-1.2x of it (never above the
    smallest b), and a decay that leaves 1e-3 to 1e-1 of the rate after trainer.max_steps."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *("sweep=annealed", "task=capacity", "cell=rnn"),
                *("model.budget=500", "trainer.max_steps=40000"),
            ],
            return_hydra_config=True,
        )
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params["task.samples"] == {"type": "int", "low": 1750, "high": 2500, "log": True}
    assert params["task.batch_size"] == {"type": "int", "low": 300, "high": 600, "log": True}
    gamma = params["scheduler.gamma"]
    assert gamma["low"] ** 40000 == pytest.approx(1e-3)
    assert gamma["high"] ** 40000 == pytest.approx(0.1)
    assert set(params) <= set(MEMBER_KEYS.values())
    assert round_sizes(params, 16) == [16, 16]
