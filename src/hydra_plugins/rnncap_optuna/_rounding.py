"""Sampled floats at ``DIGITS`` significant digits: a job's overrides stay short, and the value
Optuna records for a trial is the value its job trains with (its override text, exactly).

``RoundingSampler`` wraps the configured sampler and rounds every float it proposes for a
continuous distribution (independent or relative), so Optuna stores the rounded value as the
trial's parameter; ``format_float`` writes it back as the same short text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

DIGITS = 6


def round_float(value: float, dist: BaseDistribution) -> float:
    """``value`` at ``DIGITS`` significant digits when ``dist`` is continuous and the rounded
    value stays inside it; else ``value``."""
    if not isinstance(dist, FloatDistribution) or dist.step is not None:
        return value
    short = float(f"{value:.{DIGITS}g}")
    return short if dist.low <= short <= dist.high else value


def format_float(value: float) -> str:
    """The shortest of the ``DIGITS``-digit text and ``repr`` that reads back as ``value``;
    always a float literal (``1.0``, not ``1``)."""
    text = f"{value:.{DIGITS}g}"
    if float(text) != value:
        text = repr(value)
    if not any(c in text for c in ".enai"):  # 1 -> 1.0; e, nan, inf already float
        text += ".0"
    return text


class RoundingSampler(BaseSampler):
    """``sampler`` with its continuous proposals rounded (``round_float``)."""

    def __init__(self, sampler: BaseSampler) -> None:
        self.sampler = sampler

    def __str__(self) -> str:
        return str(self.sampler)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        params = self.sampler.sample_relative(study, trial, search_space)
        return {k: round_float(v, search_space[k]) for k, v in params.items()}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        value = self.sampler.sample_independent(study, trial, param_name, param_distribution)
        return round_float(value, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
