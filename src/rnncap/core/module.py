"""The LightningModule: a RecurrentStack trained on a task's loss with a configured optimiser."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from rnncap.core.convergence import CHECKPOINT_KEY, ConvergenceRecord
from rnncap.core.stack import RecurrentStack
from rnncap.tasks.base import Batch, TaskDataModule

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
LOSSES_KEY = "rnncap_training_losses"  # first and final training loss, in the checkpoints
LOSS_KEYS = ("first_loss", "final_loss")  # their metrics.json keys


class RNNCapModule(pl.LightningModule):
    """Trains ``model`` on ``task``. A non-finite loss marks the run diverged and stops it.

    Under DDP each process holds a shard of every step's batch and the gradients are averaged
    over processes: each shard's mean loss is weighted by its share of the batch, so the
    average is exactly the gradient of the whole batch's mean loss.

    A task scored in bits (the capacity task) keeps a convergence record
    (``rnncap.core.convergence``): a row at each validation check, in the checkpoints.

    ``training_losses()`` is the training loss at the first step and at the last trained step
    (``first_loss``, ``final_loss`` of metrics.json; null when not finite), kept in the
    checkpoints: ``rnncap trainability --diverged loss_above_start`` compares them.
    """

    def __init__(
        self,
        model: RecurrentStack,
        task: TaskDataModule,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # a plain dict (never an OmegaConf object): checkpoints load with weights_only=True
        self.save_hyperparameters({"config": config or {}})
        # a buffer, so checkpoints and ddp_spawn's hand-back to the main process carry it
        self.register_buffer("_diverged", torch.tensor(False), persistent=True)
        self.record = ConvergenceRecord() if task.objective == "bits" else None
        self._val_totals: dict[str, float] = {}
        self.first_loss: float | None = None
        self.final_loss: float | None = None
        self._last_loss: Tensor | None = None  # this step's, read on the host at the end only

    @property
    def diverged(self) -> bool:
        return bool(self._diverged)

    def _shard_weight(self, batch: Batch) -> float:
        """This process's share of the step's batch times the number of processes."""
        world = self.trainer.world_size
        return len(batch[0]) * world / self.task.step_batch_size

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        if self.record is not None:
            self.record.step([(0, self.task.step_batch_size)])
        loss = self.task.loss(self.model(batch[0]), batch)
        if self.trainer.world_size > 1:
            loss = loss * self._shard_weight(batch)
        self._last_loss = loss.detach()
        if self.global_step == 0:  # one host read, in every process (DDP averages the shards)
            self.first_loss = self._mean_over_processes(self._last_loss)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            # logging and the finiteness check read the loss on the host: only now and then,
            # so a GPU can run ahead; non-finite parameters are caught again at the end. The
            # step Lightning writes a logged value under is this one (it logs at step + 1).
            # Every process takes the same decision: DDP needs all of them in each backward.
            finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)))
            if not finite:
                self._diverged.fill_(True)
                self.trainer.should_stop = True
                return None  # skip the optimiser step
            self.log("train/loss", loss, prog_bar=True, sync_dist=self.trainer.world_size > 1)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        sums = self.task.metrics(self.model(batch[0]), batch)
        if self.record is not None:
            for key, value in sums.items():
                self._val_totals[key] = self._val_totals.get(key, 0.0) + float(value)
        count = sums.pop("count")
        for key, value in sums.items():
            # every process scores the whole evaluation set: the values agree across processes
            self.log(f"val/{key}", value / count, prog_bar=key == "accuracy", sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """A convergence row: the bits of this validation check."""
        if self.record is None or not self._val_totals:
            return
        bits = self.task.summarise(self._val_totals, 1)["bits"]
        self._val_totals = {}
        self.record.add(len(self.record.rows), self.global_step, [bits])

    def convergence(self, final_bits: float | None) -> list[dict[str, Any]]:
        """The convergence record, closed by a row at the final step (``final_bits``) when the
        last validation check came earlier."""
        assert self.record is not None
        if not self.record.rows or self.record.rows[-1]["steps"] < self.global_step:
            self.record.add(len(self.record.rows), self.global_step, [final_bits])
        return self.record.rows

    def on_train_start(self) -> None:
        if self.record is not None:
            self.record.start()

    def _mean_over_processes(self, loss: Tensor) -> float:
        """The whole step batch's mean loss: each process's weighted shard loss, averaged."""
        return float(self.trainer.strategy.reduce(loss, reduce_op="mean"))

    def training_losses(self) -> dict[str, float | None]:
        """``first_loss`` and ``final_loss``: the training loss at the first step and at the
        last trained step (before its update); None where not finite or not trained."""
        losses = zip(LOSS_KEYS, (self.first_loss, self.final_loss), strict=True)
        return {k: v if v is not None and math.isfinite(v) else None for k, v in losses}

    def on_train_end(self) -> None:
        if self._last_loss is not None:
            self.final_loss = self._mean_over_processes(self._last_loss)
        if self.record is not None:
            self.record.load_state_dict(self.record.state_dict())  # stop the wall clock

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[CHECKPOINT_KEY] = self.record.state_dict()
        # this process's last loss (one shard's under DDP): a resumed run that trains no
        # further step reports it; one that trains on replaces it at its end
        last = None if self._last_loss is None else float(self._last_loss)
        checkpoint[LOSSES_KEY] = {"first": self.first_loss, "final": last}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None and CHECKPOINT_KEY in checkpoint:
            self.record.load_state_dict(checkpoint[CHECKPOINT_KEY])
        losses = checkpoint.get(LOSSES_KEY, {})
        self.first_loss, self.final_loss = losses.get("first"), losses.get("final")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}
