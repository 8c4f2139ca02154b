"""Validation of a composed run config: one clear line per bad key, before any work.

Unknown keys and unknown group options are already refused by Hydra at compose time (the
config is in struct mode); this module checks values and contradictions.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rnncap.cells.base import COMPILE_MODES, RECURRENT_INITS


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key and what is allowed."""


def _if_null(value: Any, default: Any) -> Any:
    """``${if_null:${model.hidden},500}``: the default budget applies only when no width is set."""
    return default if value is None else None


def _scaled(value: Any, factor: float, fallback: float) -> int:
    """``${scaled:${model.budget},2,500}``: round(value * factor), with ``fallback`` for a null
    value (search-space bounds relative to the parameter budget)."""
    return round((fallback if value is None else value) * factor)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("if_null"):
        OmegaConf.register_new_resolver("if_null", _if_null)
    if not OmegaConf.has_resolver("scaled"):
        OmegaConf.register_new_resolver("scaled", _scaled)


# key -> (type, minimum, exclusive minimum?, nullable)
NUMERIC_RULES: dict[str, tuple[type, float, bool, bool]] = {
    "depth": (int, 1, False, False),
    "seed": (int, 0, False, False),
    "model.hidden": (int, 1, False, True),
    "model.budget": (int, 1, False, True),
    "optimizer.lr": (float, 0, True, False),
    "optimizer.weight_decay": (float, 0, False, False),
    "optimizer.momentum": (float, 0, False, False),
    "scheduler.gamma": (float, 0, True, False),
    "cell.gate_bias": (float, float("-inf"), False, False),
    "cell.recurrent_scale": (float, 0, False, False),
    "cell.input_scale": (float, 0, True, False),
    "cell.bias_init": (float, float("-inf"), False, False),
    "task.samples": (int, 1, False, False),
    "task.input_dim": (int, 1, False, False),
    "task.steps": (int, 1, False, False),
    "task.batch_size": (int, 1, False, True),
    "trainer.max_steps": (int, 1, False, False),
    "trainer.eval_every": (int, 1, False, False),
    "trainer.checkpoint_every": (int, 1, False, True),
    "trainer.gradient_clip_val": (float, 0, True, True),
    "hardware.threads": (int, 1, False, False),
    "hardware.devices": (int, 1, False, False),
}


def _check_number(key: str, value: Any, kind: type, minimum: float, strict: bool, nullable: bool):
    if value is None:
        if not nullable:
            raise ConfigError(f"{key} must be set (got null)")
        return
    ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{key}={value!r} is out of range: must be {relation} {minimum:g}")


def _check_model_size(cfg: DictConfig) -> None:
    hidden, budget = cfg.model.hidden, cfg.model.budget
    if hidden is not None and budget is not None:
        raise ConfigError(
            f"model.hidden={hidden} and model.budget={budget} are both set: give one "
            "(model.hidden=N for a fixed width, model.budget=P for the largest width that fits)"
        )
    if hidden is None and budget is None:
        raise ConfigError("neither model.hidden nor model.budget is set: give one of them")


def _check_cell(cfg: DictConfig) -> None:
    cell = cfg.cell
    cls = get_class(cell._target_)
    if "nonlinearity" in cell and cell.nonlinearity not in cls.allowed_nonlinearities:
        raise ConfigError(
            f"cell.nonlinearity={cell.nonlinearity!r} is not allowed for cell={cell.name}; "
            f"choose one of {list(cls.allowed_nonlinearities)}"
        )
    if "recurrent_init" in cell and cell.recurrent_init not in RECURRENT_INITS:
        raise ConfigError(
            f"cell.recurrent_init={cell.recurrent_init!r}; choose one of {list(RECURRENT_INITS)}"
        )
    if cell.get("compile", False) not in COMPILE_MODES:
        raise ConfigError(
            f"cell.compile={cell.compile!r}; "
            "choose one of false, true, 'reduce-overhead', 'graphed'"
        )
    if cls.needs_square_input and cfg.depth < 2:
        raise ConfigError(
            f"cell={cell.name} needs depth >= 2 (got depth={cfg.depth}): the +RNN's depth gate "
            "only acts between layers, and the paper excludes depth 1"
        )


def _check_task(cfg: DictConfig) -> None:
    """Task-specific checks live with the task: ``TaskDataModule.check_config``."""
    get_class(cfg.task._target_).check_config(cfg.task)


ACCELERATORS = ("cpu", "gpu")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")
BACKENDS = (None, "gloo", "nccl")
DETERMINISTIC = (True, False, "warn")


def _as_yaml(value: Any) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, str(value))


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if not any(value == a and type(value) is type(a) for a in allowed):  # 1 is not True
        choices = ", ".join(_as_yaml(a) for a in allowed)
        raise ConfigError(f"{key}={value!r}; choose one of {choices}")


def _check_hardware(cfg: DictConfig) -> None:
    hw = cfg.hardware
    _one_of("hardware.accelerator", hw.accelerator, ACCELERATORS)
    _one_of("hardware.strategy", hw.strategy, STRATEGIES)
    _one_of("hardware.precision", hw.precision, PRECISIONS)
    _one_of("hardware.backend", hw.get("backend"), BACKENDS)
    _one_of("hardware.deterministic", hw.get("deterministic", False), DETERMINISTIC)
    if hw.devices > 1 and hw.strategy == "auto":
        raise ConfigError(
            f"hardware.devices={hw.devices} needs hardware.strategy=ddp or ddp_spawn (got auto)"
        )
    if hw.accelerator == "cpu" and hw.precision.startswith("16-"):
        raise ConfigError(
            f"hardware.precision={hw.precision} needs a GPU: on CPU use 32-true or bf16-mixed"
        )
    if hw.accelerator == "cpu" and hw.get("backend") == "nccl":
        raise ConfigError("hardware.backend=nccl needs GPUs: on CPU use gloo (or null)")
    _check_launch(cfg)
    _check_devices_visible(cfg)


def _launch_mode() -> tuple[bool, str]:
    """(is this a Hydra multirun job?, the launcher's target) from the running Hydra app."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, ""
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN, str(hydra.launcher.get("_target_", ""))


def _check_launch(cfg: DictConfig, multirun: bool | None = None, launcher: str = "") -> None:
    """Lightning's ``ddp`` starts the other processes by re-running the command line: inside a
    ``-m`` sweep on the basic launcher every process would re-run the whole sweep."""
    if multirun is None:
        multirun, launcher = _launch_mode()
    hw = cfg.hardware
    if multirun and hw.strategy == "ddp" and hw.devices > 1 and "submitit" not in launcher:
        raise ConfigError(
            f"-m with hardware.strategy=ddp on hardware.devices={hw.devices} would re-run the "
            "whole sweep in every process: in sweeps use hardware=ddp_spawn "
            "(hardware.strategy=ddp_spawn), or the SLURM launcher (hydra/launcher=slurm)"
        )


def _check_devices_visible(cfg: DictConfig) -> None:
    import torch

    hw = cfg.hardware
    if hw.accelerator != "gpu":
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"hardware={hw.get('name', 'gpu')} but no CUDA device is visible "
            "(hardware.accelerator=gpu): use hardware=cpu or hardware=ddp_cpu"
        )
    if hw.devices > torch.cuda.device_count():
        raise ConfigError(
            f"hardware.devices={hw.devices} but {torch.cuda.device_count()} CUDA device(s) are "
            "visible: lower hardware.devices"
        )


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first bad value of the composed run config."""
    for key, rule in NUMERIC_RULES.items():
        value = OmegaConf.select(cfg, key, default="__absent__")
        if value != "__absent__":
            _check_number(key, value, *rule)
    _check_model_size(cfg)
    _check_cell(cfg)
    _check_task(cfg)
    _check_hardware(cfg)
