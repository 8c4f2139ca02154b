"""The ``hardware`` group as Trainer arguments: accelerator, devices, DDP strategy, precision,
determinism, and checkpoints that are written atomically.

Options: ``cpu``, ``gpu`` (one device), ``ddp`` (N GPUs, one process each, started by
re-running the command), ``ddp_spawn`` (N GPUs, processes spawned from the job: usable inside
``-m`` sweeps), ``ddp_cpu`` (2 CPU processes on gloo, to exercise the multi-process path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.strategies import DDPStrategy, Strategy

from rnncap.base.io import write_atomic

# strategy name -> how DDPStrategy starts the other processes
START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn"}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place: a run
    killed mid-write keeps its previous checkpoint (Lightning's own save may stage the file in
    $TMPDIR, which is a copy, not a rename, when that is another filesystem)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        write_atomic(path, lambda f: torch.save(checkpoint, f), binary=True)


def build_strategy(hw: dict[str, Any]) -> str | Strategy:
    """``hardware.strategy`` as Lightning takes it; a DDPStrategy when a backend is named."""
    backend, strategy = hw["backend"], hw["strategy"]
    if backend is None or strategy not in START_METHODS:
        return strategy
    return DDPStrategy(start_method=START_METHODS[strategy], process_group_backend=backend)


def trainer_hardware(hw: dict[str, Any]) -> dict[str, Any]:
    """The Trainer keyword arguments that ``cfg.hardware`` (as a plain dict) sets."""
    return {
        "accelerator": hw["accelerator"],
        "devices": hw["devices"],
        "strategy": build_strategy(hw),
        "precision": hw["precision"],
        "deterministic": hw["deterministic"],
        "plugins": [AtomicCheckpointIO()],
    }


def is_rank_zero() -> bool:
    """Whether this process is rank 0: the launching process, or rank 0 of a DDP or SLURM job
    (Lightning reads RANK / LOCAL_RANK / SLURM_PROCID at import)."""
    return rank_zero_only.rank == 0
