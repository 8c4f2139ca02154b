"""The LightningModule: a RecurrentStack trained on a task's loss with a configured optimiser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from rnncap.core.stack import RecurrentStack
from rnncap.tasks.base import Batch, TaskDataModule

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class RNNCapModule(pl.LightningModule):
    """Trains ``model`` on ``task``. A non-finite loss marks the run diverged and stops it.

    Under DDP each process holds a shard of every step's batch and the gradients are averaged
    over processes: each shard's mean loss is weighted by its share of the batch, so the
    average is exactly the gradient of the whole batch's mean loss.
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
        loss = self.task.loss(self.model(batch[0]), batch)
        if self.trainer.world_size > 1:
            loss = loss * self._shard_weight(batch)
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
        count = sums.pop("count")
        for key, value in sums.items():
            # every process scores the whole evaluation set: the values agree across processes
            self.log(f"val/{key}", value / count, prog_bar=key == "accuracy", sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}
