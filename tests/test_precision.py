"""Weights rounded to a number format, against hand-computed cases and a float64 reference of
each rounding rule."""

from __future__ import annotations

import math

import pytest
import torch

from rnncap.analysis import precision as pr


def grid_reference(w: torch.Tensor, levels: int) -> torch.Tensor:
    """round(w / s) * s with s = max|w| / levels, in float64 (a literal reading of the rule)."""
    w64 = w.double()
    s = w64.abs().max() / levels
    return (torch.round(w64 / s).clamp(-levels, levels) * s).float()


def test_bf16_and_fp16_round_to_nearest_even():
    x = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11, 1 + 3 * 2**-11, 70000.0])
    bf16 = pr.round_weights(x, "bf16")  # 7 stored mantissa bits: spacing 2^-7 at 1
    assert bf16[:2].tolist() == [1.0, 1 + 2**-6]  # ties go to the even neighbour
    fp16 = pr.round_weights(x, "fp16")  # 10 stored bits: spacing 2^-10 at 1
    assert fp16[2:4].tolist() == [1.0, 1 + 2**-9]
    assert math.isinf(fp16[4])  # beyond 65504: the re-score sees a diverged model


@pytest.mark.parametrize(("name", "levels"), [("int8", 127), ("int4", 7)])
def test_symmetric_grid_matches_the_float64_rule_and_its_error_bound(name, levels):
    w = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    q = pr.round_weights(w, name)
    torch.testing.assert_close(q, grid_reference(w, levels), rtol=0, atol=1e-6)
    step = float(w.abs().max()) / levels
    assert float((q - w).abs().max()) <= step / 2 + 1e-6
    assert len(torch.unique(torch.round(q / step))) <= 2 * levels + 1
    torch.testing.assert_close(pr.round_weights(q, name), q, rtol=0, atol=1e-6)  # idempotent


def test_per_row_scales_each_output_row_by_hand():
    w = torch.tensor([[1.0, -0.3], [0.1, 0.02]])
    # int4 rows: s = 1/7 and 0.1/7; 0.3*7 = 2.1 -> 2; 0.02 / (0.1/7) = 1.4 -> 1
    expected = torch.tensor([[1.0, -2 / 7], [0.1, 0.1 / 7]])
    torch.testing.assert_close(pr.round_weights(w, "int4_row"), expected)
    # one scale for the tensor: the small row collapses to 0.1 -> 1/7 and 0.02 -> 0
    expected_tensor = torch.tensor([[1.0, -2 / 7], [1 / 7, 0.0]])
    torch.testing.assert_close(pr.round_weights(w, "int4"), expected_tensor)
    vector = torch.tensor([0.5, -1.0])  # a vector: per tensor either way
    torch.testing.assert_close(pr.round_weights(vector, "int8_row"), grid_reference(vector, 127))


def test_ternary_by_hand():
    # mean|w| = 0.9, threshold 0.63: 2 and -1 kept, a = 1.5
    w = torch.tensor([2.0, -1.0, 0.1, 0.5])
    assert pr.round_weights(w, "ternary").tolist() == [1.5, -1.5, 0.0, 0.0]
    assert pr.round_weights(torch.zeros(3), "ternary").tolist() == [0.0, 0.0, 0.0]


def test_zero_tensors_stay_zero_and_fp32_is_a_copy():
    for name in pr.PRECISIONS:
        assert pr.round_weights(torch.zeros(2, 3), name).abs().sum() == 0
    w = torch.randn(3)
    assert torch.equal(pr.round_weights(w, "fp32"), w)


def test_rounded_copy_rounds_parameters_only_and_leaves_the_model():
    model = torch.nn.Linear(4, 3)
    model.register_buffer("gate_bias_value", torch.tensor(0.123456789, dtype=torch.float64))
    before = [p.detach().clone() for p in model.parameters()]
    rounded = pr.rounded_copy(model, "int4_row")
    for p, original in zip(rounded.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), pr.round_weights(original, "int4_row"))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert rounded.gate_bias_value.item() == 0.123456789


def test_bits_per_stored_bit_and_unknown_precision():
    assert pr.bits_per_weight_bit(100.0, 50, "int8") == 0.25
    assert pr.bits_per_weight_bit(100.0, 50, "ternary") == pytest.approx(2 / math.log2(3))
    assert pr.bits_per_stored_bit(96.0, 384.0) == 0.25
    with pytest.raises(ValueError, match=r"precision 'int2' is unknown; choose one of \["):
        pr.round_weights(torch.ones(2), "int2")
    with pytest.raises(ValueError, match=r"precision 'int2' is unknown"):
        pr.stored_bits([(2, 2)], "int2")


@pytest.mark.parametrize(
    ("precision", "expected"),
    [  # a 4 x 8 matrix and an 8-vector: 40 weights
        ("fp32", 40 * 32),
        ("bf16", 40 * 16),  # a float format stores no scale
        ("int8", 40 * 8 + 2 * 32),  # one fp32 scale per tensor
        ("int8_row", 32 * 8 + 4 * 32 + 8 * 8 + 32),  # the matrix's 4 rows; the vector: 1
        ("int4_row", 40 * 4 + 5 * 32),
        ("ternary", 40 * math.log2(3) + 2 * 32),  # the magnitude a, per tensor
    ],
)
def test_stored_bits_count_the_scales_by_hand(precision, expected):
    assert pr.stored_bits([(4, 8), (8,)], precision) == pytest.approx(expected)
    model = torch.nn.Linear(8, 4)  # weight [4, 8], bias [4]
    weights = 36 * pr.PRECISIONS[precision]
    scales = {"int8_row": 5, "int4_row": 5, "int8": 2, "ternary": 2}.get(precision, 0)
    assert pr.model_stored_bits(model, precision) == pytest.approx(weights + 32 * scales)


def test_int8_row_of_a_4x8_matrix_stores_384_bits_and_the_scales_change_the_ranking():
    assert pr.stored_bits([(4, 8)], "int8_row") == 32 * 8 + 4 * 32  # 384, not 256
    # 100 bits held by this matrix: int8_row 0.39 bits per weight bit but 0.26 per stored
    # bit, below per-tensor int8 (100 / 288 = 0.35) although the row scales held more
    assert pr.bits_per_stored_bit(100.0, pr.stored_bits([(4, 8)], "int8_row")) < (
        pr.bits_per_stored_bit(100.0, pr.stored_bits([(4, 8)], "int8"))
    )
    assert pr.scale_count((0, 3), "int8_row") == 0  # an empty tensor stores nothing
