"""Successive halving inside a population job (Jamieson & Talwalkar 2016; Li et al. 2018).

``model.halving={eta: E, min_steps: r}`` with ``model.population=K``: all K members train to
the first rung (r steps); at each rung end every training member is scored by the task
objective (bits for the capacity task) on its whole training set, and the best
``max(1, n // E)`` of the n continue *from their state* to the next rung (E times as many
steps: r, rE, rE^2, ... up to the top rung ``model.halving.max_steps``, default
``trainer.max_steps``). The others are ``pruned``: they leave the population's batch (no
forward, no backward, their optimiser state freed), so each rung costs about as much as the
first. Ranking is deterministic (objective, then member index); at each rung end the job
writes its checkpoint atomically (``RungCheckpoint``), so a run killed mid-rung resumes from
the last rung end (or a later ``trainer.checkpoint_every`` checkpoint) without losing or
repeating a rung.

    K=64, E=4, r=500, top 32000: 64 x 500 -> 16 x 2000 -> 4 x 8000 -> 1 x 32000 steps
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from rnncap.base.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """Rung ends in cumulative steps (the last is the top rung) and the reduction factor."""

    eta: int
    rungs: tuple[int, ...]

    def survivors(self, members: int) -> int:
        """How many of ``members`` continue past a rung."""
        return max(1, members // self.eta)


def halving_schedule(cfg: DictConfig) -> Schedule | None:
    """The schedule of ``model.halving`` (None: no halving); an impossible one is refused in
    one line naming the key."""
    node = cfg.model.get("halving")
    if node is None or node.get("eta") is None:
        return None
    eta, first = node.eta, node.get("min_steps")
    top = node.get("max_steps") or cfg.trainer.max_steps
    if eta < 2:
        raise ConfigError(f"model.halving.eta={eta} must be >= 2 (the best 1/eta continue)")
    if first is None or first < 1:
        raise ConfigError(f"model.halving.min_steps={first}: give the first rung's steps (>= 1)")
    if top > cfg.trainer.max_steps:
        raise ConfigError(
            f"model.halving.max_steps={top} is above trainer.max_steps={cfg.trainer.max_steps}: "
            "the top rung is at most the run's steps"
        )
    if first > top:
        raise ConfigError(
            f"model.halving.min_steps={first} is above the top rung ({top} steps): "
            "lower it or raise trainer.max_steps"
        )
    if (cfg.model.get("members") or {}).get("max_steps") is not None:
        raise ConfigError(
            "model.members.max_steps: successive halving (model.halving) sets each member's "
            "steps; drop the per-member list"
        )
    rungs, steps = [], first
    while steps < top:
        rungs.append(steps)
        steps *= eta
    return Schedule(eta, (*rungs, top))


def ranked(values: list[float | None], maximize: bool) -> list[int]:
    """Indices of ``values`` best first (non-finite and None last), ties by index."""

    def key(k: int) -> tuple[int, float, int]:
        v = values[k]
        if v is None or not math.isfinite(v):
            return (1, 0.0, k)
        return (0, -v if maximize else v, k)

    return sorted(range(len(values)), key=key)


class RungCheckpoint(pl.Callback):
    """Writes ``<dir>/last.ckpt`` after every training step at which the module ended a rung
    (``module.rung_ended``), atomically: through the trainer's ``AtomicCheckpointIO``."""

    def __init__(self, dirpath: Path) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args) -> None:
        if not getattr(module, "rung_ended", False):
            return
        module.rung_ended = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path, weights_only=False)  # the optimiser state too
