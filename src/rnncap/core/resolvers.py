"""OmegaConf resolvers that the config files use."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def if_null(value: Any, default: Any) -> Any:
    """``${if_null:${model.hidden},500}``: the default budget applies only when no width is set."""
    return default if value is None else None


def scaled(value: Any, factor: float, fallback: float) -> int:
    """``${scaled:${model.budget},2,500}``: round(value * factor), with ``fallback`` for a null
    value (search-space bounds relative to the parameter budget)."""
    return round((fallback if value is None else value) * factor)


def register_resolvers() -> None:
    for name, resolver in {"if_null": if_null, "scaled": scaled}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
