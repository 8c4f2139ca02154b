"""Validation of a composed run config: one clear line per bad key, before any work.

Hydra refuses unknown keys and options and, through the structured configs
(``rnncap.core.schema``), values of the wrong type while composing; ``compose_error`` turns
those refusals into the same one line. ``validate`` then walks the composed config once,
checking every field's range or choices from its schema's field metadata
(``rnncap.base.fields``), and applies the rules that relate several keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rnncap.base.errors import ConfigError
from rnncap.base.fields import CHOICES, GE, GT

CONVERSIONS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def as_yaml(value: Any) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, str(value))


def shown(value: Any) -> str:
    """A value as the user typed it: 0 for a float field's 0.0, quotes around text."""
    return f"{value:g}" if isinstance(value, float) else repr(value)


# ------------------------------------------------------------------ field by field
def check_field(key: str, value: Any, rules: dict[str, Any]) -> None:
    """Raise ConfigError when ``value`` breaks the range or choices in ``rules``."""
    if CHOICES in rules:
        if not any(value == c and type(value) is type(c) for c in rules[CHOICES]):
            allowed = ", ".join(as_yaml(c) for c in rules[CHOICES])
            raise ConfigError(f"{key}={shown(value)}; choose one of {allowed}")
    elif value is not None and GE in rules and value < rules[GE]:
        raise ConfigError(f"{key}={shown(value)} is out of range: must be >= {rules[GE]:g}")
    elif value is not None and GT in rules and value <= rules[GT]:
        raise ConfigError(f"{key}={shown(value)} is out of range: must be > {rules[GT]:g}")


def target_parameters(node: DictConfig) -> set[str]:
    """The keyword arguments that a library ``_target_`` of ``node`` names (a torch optimiser's
    ``eps``), following ``**kwargs`` up its base classes; none for rnncap's own classes, whose
    schema states every key, or without a target."""
    target = node.get("_target_") if "_target_" in node else None
    if not target or str(target).startswith("rnncap."):
        return set()
    try:
        obj = get_class(target) if target else None
    except Exception:  # noqa: BLE001  (an unknown target fails later, with its own message)
        return set()
    names: set[str] = set()
    for init in [c.__init__ for c in obj.__mro__] if obj is not None else []:
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        names |= {p.name for p in params if p.kind not in kinds and p.name != "self"}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return names


def check_known_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """A key appended with ``+`` (``+model.bugdet=200``, which Hydra's hint suggests for a typo)
    to a structured node must be a field of its schema or an argument of its ``_target_``."""
    known = {f.name for f in dataclasses.fields(schema)} | target_parameters(node)
    for key in node:
        if key in known or (not prefix and key == "hydra"):
            continue
        near = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f"did you mean {prefix}{near[0]}?" if near else "none is close"
        group = prefix.rstrip(".") or "the run config"
        raise ConfigError(
            f"{prefix}{key} is not a key of {group}: {hint} (its keys: {', '.join(sorted(known))})"
        )


def walk(node: DictConfig, prefix: str = "") -> None:
    """Check every field of ``node`` and of the structured nodes inside it against the field
    metadata of its schema (``OmegaConf.get_type`` names the dataclass of a typed node), and
    refuse keys its schema does not have."""
    schema = OmegaConf.get_type(node)
    rules = {}
    if dataclasses.is_dataclass(schema):
        check_known_keys(node, schema, prefix)
        rules = {f.name: f.metadata for f in dataclasses.fields(schema) if f.metadata}
    for key in node:
        if key not in rules and OmegaConf.is_interpolation(node, key):
            continue  # e.g. output_dir, resolved only inside a Hydra app
        value = node[key]
        if isinstance(value, DictConfig):
            walk(value, f"{prefix}{key}.")
        elif key in rules:
            check_field(f"{prefix}{key}", value, rules[key])


# ------------------------------------------------------------------ rules across keys
def check_model_size(cfg: DictConfig) -> None:
    """Exactly one of ``model.hidden`` (a width) and ``model.budget`` (a parameter count)."""
    hidden, budget = cfg.model.hidden, cfg.model.budget
    if hidden is not None and budget is not None:
        raise ConfigError(
            f"model.hidden={hidden} and model.budget={budget} are both set: give one "
            "(model.hidden=N for a fixed width, model.budget=P for the largest width that fits)"
        )
    if hidden is None and budget is None:
        raise ConfigError("neither model.hidden nor model.budget is set: give one of them")


def check_cell_options(cfg: DictConfig) -> None:
    """The cell class states which nonlinearities, recurrent inits and orthogonal maps it takes
    (``RecurrentCell.check_options``), whether it needs depth >= 2, and how its own keys relate
    (``RecurrentCell.check_config``)."""
    cell = cfg.cell
    cls = get_class(cell._target_)
    init = getattr(cell.get("recurrent_init"), "value", cell.get("recurrent_init"))
    cls.check_options(cell.name, cell.get("nonlinearity"), init, cell.get("orthogonal"))
    cls.check_config(cell)
    if cls.needs_square_input and cfg.depth < 2:
        raise ConfigError(
            f"cell={cell.name} needs depth >= 2 (got depth={cfg.depth}): the +RNN's depth gate "
            "only acts between layers, and the paper excludes depth 1"
        )


def check_orthogonal(cfg: DictConfig) -> None:
    """``cell.orthogonal`` (which cells take it: ``check_cell_options``) needs a solo run: the
    blocks' fixed initial factors B_k are buffers, which a population
    (``rnncap.core.population``) stacks for training but does not hand back per member."""
    cell = cfg.cell
    kind = cell.get("orthogonal")
    if kind is None:
        return
    if cfg.model.population > 1:
        raise ConfigError(
            f"cell.orthogonal={kind} with model.population={cfg.model.population}: a member's "
            "initial orthogonal factor would not come back with it; train solo runs instead"
        )


def check_dropout(cfg: DictConfig) -> None:
    """A cell's dropout (the LRU block's ``cell.dropout``) draws random masks, which a
    population's vmap does not give each member: populations train without it."""
    rate = cfg.cell.get("dropout") or 0.0
    if rate > 0 and cfg.model.population > 1:
        raise ConfigError(
            f"cell.dropout={rate:g} with model.population={cfg.model.population}: vmap draws "
            "no dropout masks per member; set cell.dropout=0 or train solo runs"
        )


def check_task_options(cfg: DictConfig) -> None:
    """Rules that relate a task's own keys live with the task: ``TaskDataModule.check_config``."""
    get_class(cfg.task._target_).check_config(cfg.task)


def check_hardware_combination(cfg: DictConfig) -> None:
    hw = cfg.hardware
    if hw.devices > 1 and hw.strategy == "auto":
        raise ConfigError(
            f"hardware.devices={hw.devices} needs hardware.strategy=ddp or ddp_spawn (got auto)"
        )
    if hw.accelerator == "cpu" and hw.precision.startswith("16-"):
        raise ConfigError(
            f"hardware.precision={hw.precision} needs a GPU: on CPU use 32-true or bf16-mixed"
        )
    if hw.accelerator == "cpu" and hw.backend == "nccl":
        raise ConfigError("hardware.backend=nccl needs GPUs: on CPU use gloo (or null)")


def launch_mode() -> tuple[bool, str]:
    """(is this a Hydra multirun job?, the launcher's target) from the running Hydra app."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, ""
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN, str(hydra.launcher.get("_target_", ""))


def check_launch(cfg: DictConfig, multirun: bool | None = None, launcher: str = "") -> None:
    """Lightning's ``ddp`` starts the other processes by re-running the command line: inside a
    ``-m`` sweep on the basic launcher every process would re-run the whole sweep."""
    if multirun is None:
        multirun, launcher = launch_mode()
    hw = cfg.hardware
    if multirun and hw.strategy == "ddp" and hw.devices > 1 and "submitit" not in launcher:
        raise ConfigError(
            f"-m with hardware.strategy=ddp on hardware.devices={hw.devices} would re-run the "
            "whole sweep in every process: in sweeps use hardware=ddp_spawn "
            "(hardware.strategy=ddp_spawn), or the SLURM launcher (hydra/launcher=slurm)"
        )


def check_devices_visible(cfg: DictConfig) -> None:
    import torch

    hw = cfg.hardware
    if hw.accelerator != "gpu":
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"hardware={hw.name} but no CUDA device is visible "
            "(hardware.accelerator=gpu): use hardware=cpu or hardware=ddp_cpu"
        )
    if hw.devices > torch.cuda.device_count():
        raise ConfigError(
            f"hardware.devices={hw.devices} but {torch.cuda.device_count()} CUDA device(s) are "
            "visible: lower hardware.devices"
        )


RULES = (
    check_model_size,
    check_cell_options,
    check_orthogonal,
    check_dropout,
    check_task_options,
    check_hardware_combination,
    check_launch,
    check_devices_visible,
)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first bad value of the composed run config."""
    walk(cfg)
    for rule in RULES:
        rule(cfg)


# ------------------------------------------------------------------ compose-time refusals
def compose_error(err: BaseException) -> str | None:
    """The one-line message for a value Hydra refused while composing (a wrong type, a value
    outside an enum, a null for a required key); None for other errors (unknown options and
    keys keep Hydra's own message, which lists what exists)."""
    cause = err.__cause__ or err
    key, value = getattr(cause, "full_key", None), getattr(cause, "value", None)
    message = str(getattr(cause, "msg", "")).split("\n")[0]
    if not key:
        return None
    for word, wanted in CONVERSIONS.items():
        if message.endswith(f"could not be converted to {word}"):
            return f"{key}={value!r} must be {wanted}"
    if message.startswith("Invalid value") and ", expected one of [" in message:
        allowed = message.split(", expected one of [", 1)[1].rstrip("]")
        return f"{key}={value!r}; choose one of {allowed}"
    if message.endswith("is not Optional"):
        return f"{key} must be set (got null)"
    return None
