"""OmegaConf resolvers that the config files use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def if_null(value: Any, default: Any) -> Any:
    """``${if_null:${model.hidden},500}``: the default budget applies only when no width is set."""
    return default if value is None else None


def scaled(value: Any, factor: float, fallback: float) -> int:
    """``${scaled:${model.budget},2,500}``: round(value * factor), with ``fallback`` for a null
    value (search-space bounds relative to the parameter budget)."""
    return round((fallback if value is None else value) * factor)


def decay_to(steps: Any, fraction: float) -> float:
    """``${decay_to:${trainer.max_steps},1e-3}``: the per-step decay gamma that brings a rate to
    ``fraction`` of itself after ``steps`` steps, gamma = fraction^(1/steps) (search-space
    bounds of ``scheduler.gamma`` relative to the run's length). Uniform gamma between two
    such bounds is very nearly log-uniform in the final fraction."""
    return float(fraction) ** (1.0 / int(steps))


def config_groups(sources: Any) -> str:
    """``${config_groups:${hydra.runtime.config_sources}}``: the option groups of the config
    dir and their options, one line each, for ``train.py --help``; the internal groups (schemas,
    the tuner's per-cell spaces, Hydra's own) are left out."""
    folders = [
        Path(s["path"]) for s in sources if s["schema"] == "file" and s["provider"] == "main"
    ]
    lines = []
    for folder in folders:
        groups = [p for p in folder.iterdir() if p.is_dir() and p.name != "hydra"]
        groups += [p for p in (folder / "hydra").glob("*") if p.is_dir()]  # hydra/launcher
        for group in sorted(groups):
            options = sorted(p.stem for p in group.glob("*.yaml"))
            if options:
                lines.append(f"{group.relative_to(folder)}: {', '.join(options)}")
    return "\n".join(lines)


def register_resolvers() -> None:
    resolvers = {
        "if_null": if_null,
        "scaled": scaled,
        "decay_to": decay_to,
        "config_groups": config_groups,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
