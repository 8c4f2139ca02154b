"""A run's output is its own lines and real warnings, not library banners.

Lightning prints its banners through the logger of its ``rank_zero_info``: "GPU available:
False, used: False", "TPU available: ...", the litlogger advertisement, "`Trainer.fit`
stopped: `max_steps=...` reached" and, on a GPU, "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES".
Its warnings go through Python's ``warnings`` and keep showing, except the two that
``quiet_libraries`` filters by their exact message, each with the reason it does not concern
an rnncap run.
"""

from __future__ import annotations

import logging
import warnings

# the loggers of Lightning's rank_zero_info (pytorch_lightning points fabric's helper at its own)
BANNER_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    """Turn library banners off for this process, keeping warnings; call before training."""
    for name in BANNER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's CombinedLoader builds a torch LeafSpec, which torch 2.13 deprecates: a
    # FutureWarning from Lightning's own code (utilities/_pytree.py) at every fit, whatever
    # the model or data
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    # a rerun resumes from its run dir's checkpoints/last.ckpt by design, after
    # ``run.check_resumable`` has checked that the same config wrote it
    warnings.filterwarnings(
        "ignore", message=r"Checkpoint directory .* exists and is not empty", category=UserWarning
    )
