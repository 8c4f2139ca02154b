"""Populations (``hydra.sweeper.population=K``): trials grouped by the settings that change the
computation, each group run as one ``model.population`` job."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hydra_plugins.rnncap_optuna._space import format_list, format_value
from rnncap.core.population import MEMBER_KEYS, OPTIONAL_MEMBER_KEYS


def split_members(chosen: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's settings -> (grouping keys: they change the computation, so members must share
    them; per-member keys, by their ``model.members`` name)."""
    member_names = {key: name for name, key in MEMBER_KEYS.items()}
    shared_keys = {k: v for k, v in chosen.items() if k not in member_names}
    own = {member_names[k]: v for k, v in chosen.items() if k in member_names}
    return shared_keys, own


def group_trials(chosen: Sequence[Mapping[str, Any]], size: int) -> list[list[int]]:
    """Indices of ``chosen`` grouped by their grouping keys (and by which per-member keys they
    have, but for ``OPTIONAL_MEMBER_KEYS``: a member without one takes its own value), in order
    of first appearance, each group cut into populations of at most ``size``.
    A group larger than ``size`` is cut in order of sample count b: every member is padded to
    its population's largest b, so similar b share a population."""
    groups: dict[str, list[int]] = {}
    for index, settings in enumerate(chosen):
        shared_keys, own = split_members(settings)
        keys = sorted(k for k in own if k not in OPTIONAL_MEMBER_KEYS)
        signature = json.dumps([sorted(shared_keys.items(), key=str), keys], default=str)
        groups.setdefault(signature, []).append(index)
    populations = []
    for group in groups.values():
        if len(group) > size:
            group = sorted(group, key=lambda i: chosen[i].get(MEMBER_KEYS["samples"], 0))
        populations += [group[i : i + size] for i in range(0, len(group), size)]
    return populations


def population_overrides(members: Sequence[Mapping[str, Any]], seed: int) -> list[str]:
    """A group of trials' settings as one population job's overrides: the shared keys once,
    ``model.population=K`` and every per-member key as a list (``model.members``); every
    member keeps the sweep's seed, so member k is the trial as a solo job would run it."""
    shared_keys, _ = split_members(members[0])
    owns = [split_members(m)[1] for m in members]  # the group shares which keys they have
    given = {name for own in owns for name in own}  # an optional key: null where one lacks it
    lists = {name: [own.get(name) for own in owns] for name in MEMBER_KEYS if name in given}
    lists["seed"] = [seed] * len(members)
    body = ",".join(f"{name}:{format_list(values)}" for name, values in lists.items())
    return [
        *(f"{k}={format_value(v)}" for k, v in shared_keys.items()),
        f"model.population={len(members)}",
        f"model.members={{{body}}}",
    ]
