"""The capacity protocol's search (sweep=capacity) and full populations under any space: every
searched key is per-member, so a round of K trials is one population of K; a b range beyond
the task's distinct inputs is refused before any trial."""

from __future__ import annotations

import optuna
import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.rnncap_optuna import _populations as sweep_populations
from hydra_plugins.rnncap_optuna import _space as sweep_space
from rnncap.core.population import MEMBER_KEYS, search_refusal


def hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def draw(cfg, trials: int) -> list[dict]:
    """``trials`` settings drawn at random from the sweep's space, as the sweeper draws them."""
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    space, _ = sweep_space.parse_search_space(params, [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [sweep_space.suggest(study.ask(), space, {}) for _ in range(trials)]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_capacity_space_is_uncapped_and_every_key_per_member(cell):
    cfg = hydra_cfg("sweep=capacity", f"cell={cell}", "model.budget=463")
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params["task.samples"] | {} == {"type": "int", "low": 463, "high": 5556, "log": True}
    assert params["task.batch_size"]["high"] == 463  # a minibatch never above the least b
    gamma = params["scheduler.gamma"]  # the rate may anneal to 1e-3 of itself by the top rung
    assert gamma["low"] ** cfg.trainer.max_steps == pytest.approx(1e-3) and gamma["high"] == 1.0
    knobs = {"optimizer", "optimizer.lr", "scheduler.gamma", "trainer.gradient_clip_val"}
    knobs |= {"cell.recurrent_scale", "cell.input_scale", "cell.recurrent_init"}
    assert knobs <= set(params)
    assert ("cell.gate_bias" in params) == (cell != "rnn")
    assert set(params) <= set(MEMBER_KEYS.values())
    chosen = draw(cfg, 16)
    assert [len(g) for g in sweep_populations.group_trials(chosen, 8)] == [8, 8]
    assert all(t["task.batch_size"] <= t["task.samples"] for t in chosen)


@pytest.mark.parametrize(
    ("sweep", "cell", "size"), [("gp", "rnn", 8), ("tpe", "gru", 128), ("random", "lstm", 128)]
)
def test_full_search_spaces_train_full_populations(sweep, cell, size):
    """sweep=gp at hydra.sweeper.population=8 (16 trials: 2 jobs), and params-paper.yaml's
    capacity search (sweep=tpe, populations of 128): optimiser, clipping, nonlinearity and
    recurrent init no longer split a round into one population per combination."""
    chosen = draw(hydra_cfg(f"sweep={sweep}", f"cell={cell}", "task=capacity"), 2 * size)
    assert len({t["optimizer"] for t in chosen}) > 1
    assert len({t["cell.recurrent_init"] for t in chosen}) > 1
    assert [len(g) for g in sweep_populations.group_trials(chosen, size)] == [size, size]


def refusal(*overrides: str, swept: str | None = None) -> str | None:
    """search_refusal of the sweep point's space as the sweeper parses it (``swept``: a range
    of the command line, which replaces the config's)."""
    cfg = hydra_cfg("sweep=capacity", *overrides)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    space, _ = sweep_space.parse_search_space(params, [*overrides, *([swept] if swept else [])])
    samples = space.get("task.samples")
    return search_refusal(cfg, samples and samples.distribution)


def test_b_range_beyond_the_distinct_inputs_is_refused():
    assert refusal("model.budget=8000") == (  # 12 x 8000 > 2^16
        "hydra.sweeper.params.task.samples reaches 96000, beyond the 2^16=65536 distinct inputs "
        "of task.input_dim=16: raise task.input_dim or lower the range"
    )
    assert refusal("model.budget=8000", "task.input_dim=17") is None
    assert refusal("model.budget=463") is None
    # a range on the command line replaces the space's; a fixed b is no range
    assert refusal("model.budget=8000", swept="task.samples=int(interval(12, 32))") is None
    assert refusal("model.budget=8000", "task.samples=500") is None
    assert "reaches 70000" in refusal(swept="task.samples=choice(100,70000)")
