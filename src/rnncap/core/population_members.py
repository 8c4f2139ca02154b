"""A population's per-member settings (``model.members``): each member's solo config.

``MEMBER_KEYS`` names the per-member keys (name -> the solo run's config key); member k is
the solo run with its own values of them (``member_config``). See ``rnncap.core.population``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from rnncap.base.errors import ConfigError
from rnncap.core.schema import OPTIMIZERS
from rnncap.core.validate import validate
from rnncap.tasks.capacity import CapacityTask

# model.members.<name> -> the solo run's config key it sets
MEMBER_KEYS: dict[str, str] = {
    "seed": "seed",
    "optimizer": "optimizer",  # the optimiser's option name (adam, rmsprop, sgd): its class
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay",
    "gamma": "scheduler.gamma",
    "clip": "trainer.gradient_clip_val",
    "gate_bias": "cell.gate_bias",
    "recurrent_scale": "cell.recurrent_scale",
    "input_scale": "cell.input_scale",
    "bias_init": "cell.bias_init",
    "nonlinearity": "cell.nonlinearity",
    "recurrent_init": "cell.recurrent_init",
    "samples": "task.samples",
    "batch_size": "task.batch_size",
    "max_steps": "trainer.max_steps",
}
# per-member keys whose null means "the member's own value" (its optimiser's default; none
# where its optimiser lacks the key): a tuner's conditional keys, so trials with and without
# them share a population
OPTIONAL_MEMBER_KEYS = ("momentum",)
_ABSENT = object()


@dataclass(frozen=True)
class Member:
    """One member's settings (``MEMBER_KEYS``): the solo run it reproduces. ``momentum`` is
    None for an optimiser without it, ``gamma`` None without a scheduler."""

    seed: int
    optimizer: str
    lr: float
    momentum: float | None
    weight_decay: float
    gamma: float | None
    clip: float | None
    gate_bias: float
    recurrent_scale: float
    input_scale: float
    bias_init: float
    nonlinearity: str
    recurrent_init: str
    samples: int
    batch_size: int | None
    max_steps: int


# ---------------------------------------------------------------------- settings
def _member_list(cfg: DictConfig, key: str, size: int) -> list[Any] | None:
    members = cfg.model.get("members")
    if members is None or members.get(key) is None:
        return None
    values = OmegaConf.to_container(members[key], resolve=True)
    if not isinstance(values, list) or len(values) != size:
        raise ConfigError(
            f"model.members.{key} must be a list of model.population={size} values, got {values!r}"
        )
    return values


def _has_key(cfg: DictConfig, path: str) -> bool:
    return OmegaConf.select(cfg, path, default=_ABSENT) is not _ABSENT


def member_settings(cfg: DictConfig) -> list[Member]:
    """The K members' settings from ``model.population`` and ``model.members``."""
    size = cfg.model.population  # >= 1: its range is in the schema (rnncap.core.schema)
    members = cfg.model.get("members")
    if members is not None:
        unknown = set(members) - set(MEMBER_KEYS)
        if unknown:
            raise ConfigError(
                f"model.members has unknown keys {sorted(unknown)}; allowed: {list(MEMBER_KEYS)}"
            )
    columns: dict[str, list[Any]] = {}
    for name, path in MEMBER_KEYS.items():
        values = _member_list(cfg, name, size)
        if values is not None and name == "optimizer":
            unknown = sorted({str(v) for v in values} - set(OPTIMIZERS))
            if unknown:
                raise ConfigError(
                    f"model.members.optimizer has {unknown}; choose from {list(OPTIMIZERS)}"
                )
        if values is None:
            default = (
                optimizer_name(cfg.optimizer)
                if name == "optimizer"
                else OmegaConf.select(cfg, path, default=None)
            )
            default = default.value if isinstance(default, Enum) else default
            values = [cfg.seed + k for k in range(size)] if name == "seed" else [default] * size
        columns[name] = values
    return [Member(**{name: columns[name][k] for name in MEMBER_KEYS}) for k in range(size)]


def optimizer_name(node: DictConfig) -> str:
    """The option name of an optimiser node, from its class: torch.optim.Adam -> adam."""
    return str(node.get("_target_", "")).split(".")[-1].lower()


def member_optimizer(node: DictConfig, name: str) -> DictConfig:
    """The optimiser node of option ``name``: its schema's defaults, with the values of the
    run's own node (``node``) for the keys the two share (lr, weight_decay, ...)."""
    if optimizer_name(node) == name:
        return copy.deepcopy(node)
    own = OmegaConf.structured(OPTIMIZERS[name])
    for key, value in node.items():
        if key not in ("_target_", "_partial_") and key in own:
            own[key] = value
    return own


def member_config(cfg: DictConfig, member: Member, index: int = 0) -> DictConfig:
    """The solo run's config for one member (validated like any run's)."""
    solo = copy.deepcopy(cfg)
    with open_dict(solo):
        if shares_data(cfg):  # one data set: the population's, whatever the member's seed
            solo.task.seed = cfg.task.seed
        solo.optimizer = member_optimizer(cfg.optimizer, member.optimizer)
        for name, path in MEMBER_KEYS.items():
            value = getattr(member, name)
            if name == "optimizer":
                continue
            if not _has_key(solo, path):
                given = (cfg.model.get("members") or {}).get(name) is not None
                if value is None or not given:
                    continue  # the run's own value of a key this member's optimiser lacks
                group = path.split(".")[0]
                option = member.optimizer if group == "optimizer" else group
                raise ConfigError(
                    f"model.members.{name} sets {path}, which {group}={option} does not have"
                    + (f" (member {index})" if cfg.model.population > 1 else "")
                )
            if value is None and name in OPTIONAL_MEMBER_KEYS:
                continue  # the member's own value (its optimiser's default)
            OmegaConf.update(solo, path, value, merge=False)
        solo.model.population, solo.model.members = 1, None
    try:
        validate(solo)
    except ConfigError as err:
        raise ConfigError(f"population member {index}: {err}") from None
    return solo


def shares_data(cfg: DictConfig) -> bool:
    """Whether the members of ``cfg``'s population share one data set (every task but the
    capacity task, whose members each draw their own b_k samples)."""
    return not issubclass(get_class(cfg.task._target_), CapacityTask)


def population_refusal(cfg: DictConfig) -> str | None:
    """Why ``cfg``'s task cannot train as a population (None: it can). Every task can now (the
    capacity task's members take minibatches from their own b_k samples); the run and the
    sweeper prefix a reason with their own key."""
    del cfg
    return None


def search_refusal(cfg: DictConfig, samples: Any) -> str | None:
    """Why a sweep's search space cannot run (None: it can): a range of b (``samples``, the
    space's distribution of ``task.samples``: an Optuna distribution, None when not searched)
    beyond the 2^input_dim distinct inputs of the capacity task of ``cfg``."""
    if samples is None or shares_data(cfg):
        return None
    largest = max(samples.choices) if hasattr(samples, "choices") else samples.high
    width = cfg.task.input_dim
    if width < 63 and largest > 2**width:
        return (
            f"hydra.sweeper.params.task.samples reaches {largest}, beyond the 2^{width}="
            f"{2**width} distinct inputs of task.input_dim={width}: raise task.input_dim or "
            "lower the range"
        )
    return None


def check_population(cfg: DictConfig) -> list[DictConfig]:
    """Validate the population keys; return the K members' solo configs."""
    if (reason := population_refusal(cfg)) is not None:
        raise ConfigError(f"model.population={cfg.model.population} {reason}")
    members = member_settings(cfg)
    for name in ("samples", "batch_size"):
        if shares_data(cfg) and len({getattr(m, name) for m in members}) > 1:
            raise ConfigError(
                f"model.members.{name}: the members of task={cfg.task.name} share one data set "
                f"and batch order; give one {MEMBER_KEYS[name]} (per-member values are for the "
                "capacity task)"
            )
    precision = str(OmegaConf.select(cfg, "hardware.precision", default=""))
    if len({m.optimizer for m in members}) > 1 and precision.startswith("16"):
        raise ConfigError(
            f"model.members.optimizer: several optimiser classes in one population need "
            f"unscaled gradients, and hardware.precision={precision} scales them; use "
            "bf16-mixed or 32-true, or one optimizer"
        )
    return [member_config(cfg, m, k) for k, m in enumerate(members)]
