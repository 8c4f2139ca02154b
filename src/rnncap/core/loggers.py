"""Experiment trackers from the ``logger`` config group (none, csv, wandb).

W&B never prompts: it runs offline unless ``logger.offline=false`` *and* an API key is
available; every job finishes its own W&B run (see ``finish_loggers``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

log = logging.getLogger(__name__)


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_logger(cfg: DictConfig, run_dir: Path) -> Logger | None:
    """Instantiate ``cfg.logger`` (None for ``logger=none``); W&B's run name and tags are in
    ``conf/logger/wandb.yaml``, its offline mode and run id are decided here."""
    if not cfg.logger:
        return None
    target = cfg.logger._target_
    if not target.endswith("WandbLogger"):
        return instantiate(cfg.logger)
    offline = cfg.logger.get("offline", True)
    if not offline and not wandb_has_key():
        log.warning("logger.offline=false but no W&B API key is set: logging offline instead")
        offline = True
    id_file = run_dir / "wandb_id.txt"  # a rerun in the same run dir resumes the same W&B run
    run_id = id_file.read_text().strip() if id_file.exists() else None
    logger = instantiate(
        cfg.logger,
        offline=offline,
        id=run_id,
        resume="allow",
    )
    # Lightning always passes wandb.init an ``anonymous`` setting (None here), which W&B
    # >= 0.19 answers with "The anonymous setting has no effect" on every run; unset, W&B's
    # own default applies, which is what None meant
    logger._wandb_init.pop("anonymous", None)
    id_file.write_text(logger.experiment.id)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    config["trial"] = hydra.job.num if multirun else None  # the Optuna trial number under -m
    logger.log_hyperparams(config)
    return logger


def log_final(logger: Logger | None, results: dict[str, Any]) -> None:
    """Record the final metrics: as the W&B run summary, or as a last row elsewhere."""
    if logger is None:
        return
    results = {k: v for k, v in results.items() if not isinstance(v, list)}  # a population's rows
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    if hasattr(logger, "experiment") and hasattr(logger.experiment, "summary"):
        summary = {f"final/{k}": v for k, v in results.items()}
        summary["final/diverged"] = int(results.get("status") == "diverged")  # infeasible share
        logger.experiment.summary.update(summary)
        # what the dashboard's panels plot against: the size the run got (budget -> width)
        what = {k: results.get(k) for k in ("params", "hidden", "input_dim")}
        logger.experiment.config.update(what, allow_val_change=True)
    else:
        logger.log_metrics({f"final/{k}": v for k, v in numbers.items()})
    logger.save()


def finish_loggers(logger: Logger | None) -> None:
    """End the W&B run of this job so each multirun job is its own run."""
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()
