"""Addition written as characters (Collins et al. 2017, section 3.3).

Each problem adds two integers a, b of 1..D digits (D = ``max_digits``; the number of digits
is uniform, then the value is uniform among numbers of that many digits). The question
"a+b=" is shown one character per step, right-aligned in 2D + 2 steps (blanks before it);
then D + 2 answer steps show blanks while the network emits the answer's decimal digits,
most significant first, followed by an end symbol '.'. Positions after the end symbol are
not scored.

    input symbols:  0-9, '+', '=', blank                       (13, one-hot)
    output classes: 0-9, '.'                                   (11)

Metrics: ``accuracy`` = fraction of problems whose whole answer (digits and end) is right;
``loss`` = cross-entropy per answer character (nats), averaged per problem, then over problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule, TensorBatches

PLUS, EQUALS, BLANK = 10, 11, 12  # input symbols after the digits
END = 10  # output class after the digits
IGNORE = -100  # unscored target (cross_entropy's ignore_index)
MAX_DIGITS = 17  # sums stay below 10^18: exact in int64


def draw_operands(count: int, max_digits: int, generator: torch.Generator) -> Tensor:
    """[count] integers: digit count n uniform in 1..max_digits, then a uniform n-digit value
    (0 counts as a 1-digit number)."""
    n = torch.randint(1, max_digits + 1, (count, 1), generator=generator)
    place = torch.arange(max_digits)  # 0 = units
    digits = torch.randint(0, 10, (count, max_digits), generator=generator)
    lead = torch.randint(1, 10, (count, 1), generator=generator)
    lead = torch.where(n == 1, digits[:, :1], lead)  # one digit: 0..9
    digits = torch.where(place == n - 1, lead, torch.where(place < n, digits, 0))
    return (digits * 10**place).sum(1)


def num_digits(values: Tensor) -> Tensor:
    """Decimal length [N] of non-negative integers [N] below 10^19 (0 has one digit)."""
    return (values[:, None] >= 10 ** torch.arange(1, 19)).sum(1) + 1


def digit_at(values: Tensor, place: Tensor) -> Tensor:
    """The decimal digit of ``values`` [N] at ``place`` ([N, K] or [K], 0 = units)."""
    return values[:, None] // 10 ** place.clamp_min(0) % 10


def encode_problems(a: Tensor, b: Tensor, max_digits: int) -> tuple[Tensor, Tensor]:
    """Input symbols [N, 3D + 4] and answer targets [N, D + 2] (IGNORE after the end)."""
    d, n = max_digits, len(a)
    r = torch.arange(2 * d + 1, -1, -1)  # question column counted from the right: '=' at 0
    a_len, b_len = num_digits(a)[:, None], num_digits(b)[:, None]
    b_place, a_place = r - 1, r - b_len - 2  # which digit of b / a sits in column r
    question = torch.full((n, 2 * d + 2), BLANK)
    question = torch.where(r == 0, EQUALS, question)
    question = torch.where((b_place >= 0) & (b_place < b_len), digit_at(b, b_place), question)
    question = torch.where(r == b_len + 1, PLUS, question)
    question = torch.where((a_place >= 0) & (a_place < a_len), digit_at(a, a_place), question)
    total = a + b
    i, t_len = torch.arange(d + 2), num_digits(total)[:, None]  # answer position, from the left
    answer = torch.where(i < t_len, digit_at(total, t_len - 1 - i), IGNORE)
    answer = torch.where(i == t_len, END, answer)
    inputs = torch.cat([question, torch.full((n, d + 2), BLANK)], 1)
    return inputs, answer


@dataclass
class ArithmeticConfig(TaskConfig):
    """``task=arithmetic``: "123+45=" as characters, then the sum's digits and an end mark."""

    _target_: str = "rnncap.tasks.arithmetic.ArithmeticTask"
    name: str = "arithmetic"
    # D: operands have 1..D digits (digit count uniform, then value uniform); at most 17
    max_digits: int = bounded(3, ge=1)
    samples: int = bounded(10000, ge=1)  # training problems (fixed set)
    # held-out problems (drawn independently, so small D repeats some training ones)
    eval_samples: int = bounded(1000, ge=1)
    batch_size: int | None = bounded(64, ge=1)  # problems per training step; null = full batch


class ArithmeticTask(TaskDataModule):
    """Add two integers written as characters; metrics: whole-answer accuracy, loss."""

    name = "arithmetic"
    objective = "loss"
    objective_direction = "minimize"
    config: ArithmeticConfig

    @classmethod
    def check_config(cls, node: Any) -> None:
        if node.max_digits > MAX_DIGITS:
            raise ConfigError(f"task.max_digits={node.max_digits} must be <= {MAX_DIGITS}")

    @property
    def input_size(self) -> int:
        return BLANK + 1

    @property
    def output_size(self) -> int:
        return END + 1

    @property
    def answer_steps(self) -> int:
        return self.config.max_digits + 2

    def problems(self, count: int, generator: torch.Generator) -> TensorBatches:
        """(one-hot inputs [N, T, 13], answer targets [N, D + 2])."""
        a = draw_operands(count, self.config.max_digits, generator)
        b = draw_operands(count, self.config.max_digits, generator)
        symbols, answer = encode_problems(a, b, self.config.max_digits)
        return TensorBatches(F.one_hot(symbols, self.input_size).float(), answer)

    def generate(self, generator: torch.Generator) -> tuple[TensorBatches, TensorBatches]:
        return self.problems(self.config.samples, generator), self.problems(
            self.config.eval_samples, generator
        )

    def settings(self) -> dict[str, Any]:
        return {"max_digits": self.config.max_digits, "samples": self.config.samples}

    def _per_problem(self, outputs: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy per answer character [B] and whole-answer correctness [B]."""
        logits, target = outputs[:, -self.answer_steps :], batch[1]  # [B, L, O], [B, L]
        nats = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # 0 if ignored
        scored = target != IGNORE
        wrong = (logits.argmax(-1) != target) & scored
        return nats.sum(1) / scored.sum(1), (~wrong.any(1)).float()

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return self._per_problem(outputs, batch)[0].mean()

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        nats, exact = self._per_problem(outputs, batch)
        return {
            "accuracy": exact.sum(),
            "loss": nats.sum(),
            "count": torch.tensor(float(len(exact))),
        }
