"""The bits measure on hand-computed cases, and the capacity task's data."""

from __future__ import annotations

import math

import pytest
import torch

from rnncap.base.metrics import binary_entropy, stored_bits
from rnncap.tasks.capacity import CapacityTask, distinct_binary_rows


@pytest.mark.parametrize(
    ("p", "fraction"),
    [(1.0, 1.0), (0.9, 0.531), (0.5, 0.0), (0.0, 1.0), (0.75, 0.18872)],
)
def test_stored_bits_hand_cases(p, fraction):
    assert stored_bits(1000, p) == pytest.approx(1000 * fraction, abs=0.5)


def test_binary_entropy_by_hand():
    # H2(0.9) = -0.9 log2 0.9 - 0.1 log2 0.1 = 0.13680 + 0.33219
    assert binary_entropy(0.9) == pytest.approx(0.4689956, abs=1e-6)
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(1.0) == binary_entropy(0.0) == 0.0


def test_capacity_data_is_seeded_distinct_and_shaped():
    task = CapacityTask.with_keys(samples=200, input_dim=8, steps=4, seed=3)
    task.setup()
    x, y = task.train_set.tensors
    assert x.shape == (200, 4, 8) and y.shape == (200,)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and x[:, 1:].abs().sum() == 0
    assert len(torch.unique(x[:, 0], dim=0)) == 200
    assert 60 < y.sum() < 140
    again = CapacityTask.with_keys(samples=200, input_dim=8, steps=4, seed=3)
    again.setup()
    assert torch.equal(again.train_set.tensors[0], x) and torch.equal(again.train_set.tensors[1], y)
    other = CapacityTask.with_keys(samples=200, input_dim=8, steps=4, seed=4)
    other.setup()
    assert not torch.equal(other.train_set.tensors[1], y)
    assert task.eval_set is task.train_set  # capacity measures memorisation


def test_distinct_rows_can_fill_the_whole_cube():
    rows = distinct_binary_rows(16, 4, torch.Generator().manual_seed(0))
    assert len(torch.unique(rows, dim=0)) == 16
    with pytest.raises(ValueError, match="task.samples=17"):
        distinct_binary_rows(17, 4, torch.Generator().manual_seed(0))


def test_capacity_summary_from_counts():
    task = CapacityTask.with_keys(samples=10)
    out = task.summarise({"accuracy": 9.0, "loss": 1.0, "count": 10.0}, params=2)
    assert out["accuracy"] == 0.9
    assert out["bits"] == pytest.approx(10 * (1 - binary_entropy(0.9)))
    assert out["bits_per_param"] == pytest.approx(out["bits"] / 2)
    assert math.isclose(out["loss"], 0.1)
