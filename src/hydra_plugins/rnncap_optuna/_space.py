"""The search space of a sweep: distributions from the sweep config and the command line,
the settings a trial samples from them, and those settings as Hydra overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from hydra_plugins.rnncap_optuna._rounding import format_float
from rnncap.base.errors import ConfigError


@dataclass(frozen=True)
class ParamSpec:
    """One searched key: its distribution, and the values other keys must have for it to apply
    (``when``: key -> allowed values; e.g. momentum only for SGD and RMSProp)."""

    distribution: BaseDistribution
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


def distribution_from_dict(key: str, node: Mapping[str, Any]) -> BaseDistribution:
    """``{type: float|int|categorical, low, high, log, step, choices}`` -> a distribution."""
    kind = node.get("type")
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(node["choices"]))
        if kind == "float":
            low, high = float(node["low"]), float(node["high"])
            step = None if node.get("step") is None else float(node["step"])
            return FloatDistribution(low, high, log=bool(node.get("log", False)), step=step)
        if kind == "int":
            step = int(node.get("step") or 1)
            log_ = bool(node.get("log", False))
            return IntDistribution(int(node["low"]), int(node["high"]), log=log_, step=step)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"hydra.sweeper.params.{key}: {err}") from None
    raise ValueError(
        f"hydra.sweeper.params.{key}.type={kind!r}; choose one of float, int, categorical"
    )


def distribution_from_override(override: Override) -> BaseDistribution | None:
    """A Hydra sweep override (``a,b``, ``choice(a,b)``, ``range(1,5)``, ``interval(0,1)``,
    ``tag(log, interval(1e-4,1))``, ``int(interval(1,9))``) -> a distribution; None for a plain
    (fixed) value. Hydra intervals are float unless cast with ``int(...)``."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            stop = value.stop - value.step  # range() excludes its stop
            return FloatDistribution(value.start, stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_ = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_)
        return FloatDistribution(value.start, value.end, log=log_)
    raise ValueError(f"{override.input_line}: this sweep kind is not supported")


def parse_search_space(
    params: Mapping[str, Any], arguments: Sequence[str]
) -> tuple[dict[str, ParamSpec], dict[str, str]]:
    """The YAML search space plus the command line -> (searched keys, fixed overrides).

    Command-line sweeps join (or replace) YAML entries; a plain command-line value fixes that
    key, removing it from the search space; a YAML entry set to null is not searched (a sweep
    config that narrows another one: ``conf/sweep/members.yaml``).
    """
    parser = OverridesParser.create()
    space: dict[str, ParamSpec] = {}
    for key, node in params.items():
        if node is None:
            continue
        if isinstance(node, Mapping):
            when = {k: tuple(v) for k, v in (node.get("when") or {}).items()}
            space[key] = ParamSpec(distribution_from_dict(key, node), when)
        else:
            (override,) = parser.parse_overrides([f"{key}={node}"])
            dist = distribution_from_override(override)
            if dist is None:
                raise ValueError(f"hydra.sweeper.params.{key}={node!r} is not a sweep")
            space[key] = ParamSpec(dist)
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        dist = distribution_from_override(override)
        if dist is None:
            space.pop(key.lstrip("+~"), None)
            fixed[key] = override.input_line
        else:
            space[key] = ParamSpec(dist)
    return space, fixed


def suggest(trial: Trial, space: Mapping[str, ParamSpec], known: Mapping[str, Any]) -> dict:
    """Sample the applicable keys of ``space`` in order (define-by-run, so a condition may
    depend on a key sampled before it); ``known`` gives values of keys outside the space."""
    chosen: dict[str, Any] = {}
    for key, spec in space.items():
        values = {**known, **chosen}
        if all(values.get(k) in allowed for k, allowed in spec.when.items()):
            chosen[key] = sample(trial, key, spec.distribution)
    return chosen


def sample(trial: Trial, key: str, dist: BaseDistribution) -> Any:
    """Ask the trial for one value of ``dist`` through Optuna's public suggest API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return format_float(value) if isinstance(value, float) else str(value)


def format_list(values: Sequence[Any]) -> str:
    return "[" + ",".join(format_value(v) for v in values) + "]"


def trial_overrides(chosen: Mapping[str, Any], fixed: Mapping[str, str]) -> list[str]:
    return [*fixed.values(), *(f"{k}={format_value(v)}" for k, v in chosen.items())]


def split_grid(
    arguments: Sequence[str], keys: Sequence[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """(the other arguments, one {key: override} per combination of the ``keys``' command-line
    values): ``depth=1,2 model.budget=100,300`` with grid [depth, model.budget] -> 4 studies."""
    if not keys:
        return list(arguments), [{}]
    parser = OverridesParser.create()
    values: dict[str, list[str]] = {}
    rest = []
    for text, override in zip(arguments, parser.parse_overrides(list(arguments)), strict=True):
        key = override.get_key_element()
        if key not in keys:
            rest.append(text)
        elif override.is_sweep_override():
            if not override.is_choice_sweep():
                raise ConfigError(f"{text}: a hydra.sweeper.grid key takes a list a,b,c")
            values[key] = [str(v) for v in override.sweep_string_iterator()]
        else:
            values[key] = [str(override.value())]
    missing = [k for k in keys if k not in values]
    if missing:
        raise ConfigError(
            f"hydra.sweeper.grid={list(keys)}: give {missing[0]}=a,b,... on the command line"
        )
    points = [{}]
    for key in keys:
        points = [{**p, key: f"{key}={v}"} for p in points for v in values[key]]
    return rest, points
