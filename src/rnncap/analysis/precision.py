"""Weights at reduced precision: how many bits each stored parameter needs (issue "capacity
under precision"). A trained model's parameters are rounded to a number format and the model
is scored again; the capacity task's bits at that precision over the bits the format stores,

    bits_per_stored_bit = bits / stored_bits(model, precision),
    stored_bits         = params * bits_per_weight(precision) + scales * SCALE_BITS,

says how much of the storage the network uses (1 would be every stored bit a remembered one).
Every stored bit counts: the rounded weights and the scales a grid format keeps beside them
(``scale_count``: none for fp32/bf16/fp16, one per tensor for int8/int4 and ternary, one per
output row of every matrix for int8_row/int4_row), each scale an fp32 number (``SCALE_BITS``).
``bits_per_weight_bit`` = bits / (params * bits_per_weight) leaves the scales out; it is the
figure an accounting of the weights alone would give. A 4 x 8 matrix at int8_row, for
example, stores 32 x 8 weight bits and 4 x 32 scale bits: 384, not 256.

Formats (``PRECISIONS``: name -> bits per weight):

* ``fp32``: unchanged (32 bits).
* ``bf16``, ``fp16``: a round trip through torch's dtype (round to nearest even); fp16
  overflows to +-inf beyond 65504, which the re-score reports as a diverged model.
* ``int8``, ``int4``: symmetric uniform grids {-q..q} * s with q = 127 or 7 and one scale
  s = max|w| / q per tensor; ``int8_row``, ``int4_row``: one scale per output row (dim 0) of
  every matrix, per tensor for vectors. Through ``torch.fake_quantize_per_tensor_affine`` and
  ``torch.fake_quantize_per_channel_affine`` (zero point 0).
* ``ternary``: {-a, 0, a} per tensor, the ternary-weight-network rule (Li, Zhang & Liu 2016):
  threshold t = 0.7 mean|w|, a = mean of |w| over |w| > t; log2(3) bits per weight.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

PRECISIONS: dict[str, float] = {
    "fp32": 32.0,
    "bf16": 16.0,
    "fp16": 16.0,
    "int8": 8.0,
    "int8_row": 8.0,
    "int4": 4.0,
    "int4_row": 4.0,
    "ternary": math.log2(3.0),
}
LEVELS = {"int8": 127, "int4": 7}  # symmetric: q levels on each side of zero
TERNARY_THRESHOLD = 0.7  # times mean |w| (Li, Zhang & Liu 2016)
SCALE_BITS = 32.0  # every grid format's scales are kept as fp32 numbers


def check_precision(name: str) -> str:
    """``name`` when it is a known precision; else ValueError naming the allowed ones."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is unknown; choose one of {list(PRECISIONS)}")
    return name


def symmetric_grid(weights: Tensor, levels: int, per_row: bool) -> Tensor:
    """``weights`` rounded to {-levels..levels} * s, s = max|w| / levels per tensor or per row
    (dim 0; a vector always per tensor). An all-zero tensor (or row) stays zero."""
    w = weights.detach().float()
    if per_row and w.dim() >= 2:
        peak = w.abs().flatten(1).amax(1)
        scale = torch.where(peak > 0, peak / levels, torch.ones_like(peak))
        zero = torch.zeros(len(scale), dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -levels, levels)
    peak = float(w.abs().max()) if w.numel() else 0.0
    scale = peak / levels if peak > 0 else 1.0
    return torch.fake_quantize_per_tensor_affine(w, scale, 0, -levels, levels)


def ternary(weights: Tensor) -> Tensor:
    """{-a, 0, a}: zero where |w| <= 0.7 mean|w|, else sign(w) * a, a = mean |w| above it."""
    w = weights.detach().float()
    magnitude = w.abs()
    threshold = TERNARY_THRESHOLD * magnitude.mean() if w.numel() else 0.0
    kept = magnitude > threshold
    if not bool(kept.any()):
        return torch.zeros_like(w)
    return torch.sign(w) * kept * magnitude[kept].mean()


def round_weights(weights: Tensor, precision: str) -> Tensor:
    """``weights`` as ``precision`` stores them, back in float32."""
    check_precision(precision)
    w = weights.detach().float()
    if precision == "fp32":
        return w.clone()
    if precision == "bf16":
        return w.to(torch.bfloat16).float()
    if precision == "fp16":
        return w.to(torch.float16).float()
    if precision == "ternary":
        return ternary(w)
    kind, _, row = precision.partition("_")
    return symmetric_grid(w, LEVELS[kind], per_row=row == "row")


def rounded_copy(model: nn.Module, precision: str) -> nn.Module:
    """A copy of ``model`` whose every parameter is rounded to ``precision`` (buffers, such as
    a fixed gate bias, are kept as they are: they are not trained parameters)."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in rounded.parameters():
            parameter.copy_(round_weights(parameter, precision))
    return rounded


def scale_count(shape: Sequence[int], precision: str) -> int:
    """The scales ``precision`` stores beside a tensor of ``shape``: none for the float
    formats, one per tensor for int8/int4/ternary, one per output row (dim 0) of a matrix for
    the ``_row`` formats (a vector: one); none for an empty tensor."""
    check_precision(precision)
    if precision in ("fp32", "bf16", "fp16") or math.prod(shape) == 0:
        return 0
    return int(shape[0]) if precision.endswith("_row") and len(shape) >= 2 else 1


def stored_bits(shapes: Iterable[Sequence[int]], precision: str) -> float:
    """Every bit ``precision`` stores for tensors of ``shapes``: the rounded weights at its
    bits per weight plus its scales at ``SCALE_BITS`` each."""
    shapes = [tuple(shape) for shape in shapes]
    weights = sum(math.prod(shape) for shape in shapes) * PRECISIONS[check_precision(precision)]
    return weights + SCALE_BITS * sum(scale_count(shape, precision) for shape in shapes)


def model_stored_bits(model: nn.Module, precision: str) -> float:
    """``stored_bits`` of every parameter of ``model`` (what ``rounded_copy`` rounds)."""
    return stored_bits((p.shape for p in model.parameters()), precision)


def bits_per_weight_bit(bits: float, params: int, precision: str) -> float:
    """Stored bits over the bits the weights alone occupy at ``precision`` (scales left out)."""
    return bits / (params * PRECISIONS[check_precision(precision)])


def bits_per_stored_bit(bits: float, stored: float) -> float:
    """Stored bits over every bit the format stores (``stored_bits``: weights and scales)."""
    return bits / stored
