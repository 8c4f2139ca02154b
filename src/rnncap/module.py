"""The LightningModule: a RecurrentStack trained on a task's loss with a configured optimiser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from rnncap.stack import RecurrentStack
from rnncap.tasks.base import Batch, TaskDataModule

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class RNNCapModule(pl.LightningModule):
    """Trains ``model`` on ``task``. A non-finite loss marks the run diverged and stops it."""

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
        self.diverged = False

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        loss = self.task.loss(self.model(batch[0]), batch)
        if self.global_step % self.trainer.log_every_n_steps == 0:
            # logging and the finiteness check read the loss on the host: only now and then,
            # so a GPU can run ahead; non-finite parameters are caught again at the end.
            if not torch.isfinite(loss):
                self.diverged = True
                self.trainer.should_stop = True
                return None  # skip the optimiser step
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        sums = self.task.metrics(self.model(batch[0]), batch)
        count = sums.pop("count")
        for key, value in sums.items():
            self.log(f"val/{key}", value / count, prog_bar=key == "accuracy")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["diverged"] = self.diverged

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.diverged = bool(checkpoint.get("diverged", False))
