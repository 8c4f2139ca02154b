"""Population training: K independent models of one shape trained in one set of kernels.

``model.population=K`` builds K solo models exactly as K solo runs would (member k seeded with
its own seed, its own data, learning rate and, for the capacity task, sample count b), stacks
their parameters into [K, ...] tensors and runs all K with ``torch.func.vmap`` over the solo
model (``functional_call``): the op count of one model, K times the work per op.

    member k = the solo run  python train.py seed=s_k optimizer.lr=lr_k task.samples=b_k

* data: member k's own training set, padded to max b_k with a mask; its loss is the mean
  over its own b_k samples, so its gradient is the solo gradient;
* optimiser: one optimiser over the stacked tensors (Adam, SGD and RMSprop act element-wise),
  run at learning rate 1 (times the schedule); their step is linear in the learning rate, so
  member k's step is that step times lr_k (at lr 1 the step is not lost to rounding against
  the weights, as it would be if a small step were rescaled);
* gradient clipping (``trainer.gradient_clip_val``) is per member, as in a solo run;
* a member whose loss becomes non-finite is ``diverged`` and its updates stop; the others go on.

Per-member settings: ``model.members={seed: [...], lr: [...], samples: [...]}`` (lists of
length K; a missing list means seeds ``seed + k``, ``optimizer.lr``, ``task.samples``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import DataLoader

from rnncap.cells.base import RecurrentCell
from rnncap.core.build import Job, build_model, build_task, final_metrics, plain, run_info
from rnncap.core.errors import ConfigError
from rnncap.core.stack import RecurrentStack
from rnncap.core.validate import validate
from rnncap.tasks.base import RepeatedFullBatch, TaskDataModule, TensorBatches, whole_batch
from rnncap.tasks.capacity import CapacityTask

log = logging.getLogger(__name__)
MEMBER_KEYS = {"seed": "seed", "lr": "optimizer.lr", "samples": "task.samples"}


@dataclass(frozen=True)
class Member:
    """One member's settings: the solo run it reproduces."""

    seed: int
    lr: float
    samples: int


# ---------------------------------------------------------------------- settings
def _member_list(cfg: DictConfig, key: str, size: int) -> list[Any] | None:
    members = cfg.model.get("members")
    if members is None or members.get(key) is None:
        return None
    values = OmegaConf.to_container(members[key], resolve=True)
    if not isinstance(values, list) or len(values) != size:
        raise ConfigError(
            f"model.members.{key} must be a list of model.population={size} values, got {values!r}"
        )
    return values


def member_settings(cfg: DictConfig) -> list[Member]:
    """The K members' settings from ``model.population`` and ``model.members``."""
    size = cfg.model.population  # >= 1: its range is in the schema (rnncap.core.schema)
    members = cfg.model.get("members")
    if members is not None:
        unknown = set(members) - set(MEMBER_KEYS)
        if unknown:
            raise ConfigError(
                f"model.members has unknown keys {sorted(unknown)}; allowed: {list(MEMBER_KEYS)}"
            )
    seeds = _member_list(cfg, "seed", size) or [cfg.seed + k for k in range(size)]
    lrs = _member_list(cfg, "lr", size) or [cfg.optimizer.lr] * size
    samples = _member_list(cfg, "samples", size) or [cfg.task.samples] * size
    return [Member(*m) for m in zip(seeds, lrs, samples, strict=True)]


def member_config(cfg: DictConfig, member: Member) -> DictConfig:
    """The solo run's config for one member (validated like any run's)."""
    solo = copy.deepcopy(cfg)
    with open_dict(solo):
        solo.seed, solo.optimizer.lr, solo.task.samples = member.seed, member.lr, member.samples
        solo.model.population, solo.model.members = 1, None
    try:
        validate(solo)
    except ConfigError as err:
        raise ConfigError(f"population member {member}: {err}") from None
    return solo


def check_population(cfg: DictConfig) -> list[DictConfig]:
    """Validate the population keys; return the K members' solo configs."""
    if not issubclass(get_class(cfg.task._target_), CapacityTask):
        raise ConfigError(f"model.population>1 supports task=capacity only, got {cfg.task.name}")
    if cfg.task.batch_size is not None:
        raise ConfigError("model.population>1 trains full batch: set task.batch_size=null")
    return [member_config(cfg, m) for m in member_settings(cfg)]


# ---------------------------------------------------------------------- model
class PopulationStack(nn.Module):
    """K RecurrentStacks of one shape as stacked [K, ...] parameters, run with vmap."""

    def __init__(self, models: list[RecurrentStack]) -> None:
        super().__init__()
        self.size = len(models)
        self.names = [name for name, _ in models[0].named_parameters()]
        params, buffers = stack_module_state(models)
        self.stacked = nn.ParameterList(nn.Parameter(params[n].detach()) for n in self.names)
        self.buffer_names = list(buffers)
        for k, name in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer_{k}", buffers[name], persistent=False)
        solo = copy.deepcopy(models[0])
        for cell in solo.modules():
            if isinstance(cell, RecurrentCell):
                cell.use_native = False  # vmap cannot batch the fused kernels
        # not registered as submodules: templates whose own tensors are never used
        self._templates = (solo.to("meta"), copy.deepcopy(models[0]))

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = dict(zip(self.names, self.stacked, strict=True))
        buffers = {n: getattr(self, f"stacked_buffer_{k}") for k, n in enumerate(self.buffer_names)}
        return params, buffers

    def forward(self, x: Tensor) -> Tensor:
        """x [K, B, T, I] -> readouts [K, B, T, O], member k on x[k] with its own weights."""
        template = self._templates[0]

        def solo(params: dict[str, Tensor], buffers: dict[str, Tensor], xk: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (xk,))

        return vmap(solo)(*self._state(), x)

    def member(self, k: int) -> RecurrentStack:
        """Member k as a solo RecurrentStack (a copy, on this population's device)."""
        model = copy.deepcopy(self._templates[1]).to(self.stacked[0].device)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.stacked[self.names.index(name)][k])
        return model


# ---------------------------------------------------------------------- data and loss
def stack_member_data(tasks: list[TaskDataModule]) -> TensorBatches:
    """(inputs [K, S, T, I], labels [K, S], mask [K, S]) with S = max b_k, zero-padded."""
    sets = [task.train_set.tensors for task in tasks]
    size = max(len(inputs) for inputs, _ in sets)
    inputs = torch.zeros(len(sets), size, *sets[0][0].shape[1:])
    labels, mask = torch.zeros(len(sets), size), torch.zeros(len(sets), size)
    for k, (x, y) in enumerate(sets):
        inputs[k, : len(x)], labels[k, : len(y)], mask[k, : len(y)] = x, y, 1.0
    return TensorBatches(inputs, labels, mask)


def member_losses(outputs: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Each member's capacity-task loss, the mean BCE over its own samples: [K]."""
    bce = F.binary_cross_entropy_with_logits(outputs[..., -1, 0], labels, reduction="none")
    return (bce * mask).sum(1) / mask.sum(1)


# ---------------------------------------------------------------------- training
def member_step(params: list[Tensor], optimizer: Any, lrs: Tensor, alive: Tensor) -> None:
    """``optimizer`` (set to learning rate 1) steps the stacked [K, ...] ``params``; member k
    moves by that step times ``lrs[k]``, and not at all once it has diverged."""
    before = [p.detach().clone() for p in params]
    optimizer.step()
    with torch.no_grad():
        for p, p0 in zip(params, before, strict=True):
            shape = (-1, *[1] * (p.dim() - 1))
            step = torch.lerp(p0, p, lrs.view(shape).to(p.dtype))
            p.copy_(torch.where(alive.view(shape), step, p0))


class PopulationModule(pl.LightningModule):
    """Trains a PopulationStack with per-member learning rates, clipping and divergence."""

    def __init__(
        self,
        population: PopulationStack,
        data: TensorBatches,
        lrs: list[float],
        optimizer: Any,
        scheduler: Any = None,
        clip: float | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.population, self.data = population, data
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.clip = clip
        self.register_buffer("lrs", torch.tensor(lrs, dtype=torch.float64))
        self.register_buffer("alive", torch.ones(len(lrs), dtype=torch.bool))
        self.save_hyperparameters({"config": config or {}})
        self.last_losses: Tensor | None = None

    def train_dataloader(self) -> DataLoader:
        batches = RepeatedFullBatch(len(self.data))
        return DataLoader(self.data, batch_sampler=batches, collate_fn=whole_batch)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, labels, mask = batch
        losses = member_losses(self.population(x), labels, mask)
        self.last_losses = losses.detach()
        self.alive &= torch.isfinite(self.last_losses)
        if not self.alive.any():
            self.trainer.should_stop = True
            return
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(torch.where(self.alive, losses, 0.0).sum())
        self._clip_per_member()
        self._step(optimizer)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self.log("train/loss_mean", losses[self.alive].mean(), prog_bar=True)

    def _clip_per_member(self) -> None:
        """torch.nn.utils.clip_grad_norm_ applied to each member's gradients on its own."""
        if self.clip is None:
            return
        grads = [p.grad for p in self.population.parameters()]
        norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()
        coef = (self.clip / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))

    def _step(self, optimizer: Any) -> None:
        member_step(list(self.population.parameters()), optimizer, self.lrs, self.alive)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters(), lr=1.0)  # lr_k applied in _step
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


def null_floats(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def population_job(cfg: DictConfig) -> Job:
    """``model.population`` members built exactly as their solo runs, trained as one module;
    results: the best member's keys at the top level, plus ``population`` and ``members``."""
    members = member_settings(cfg)
    solo_cfgs = check_population(cfg)
    tasks, models = [], []
    for solo in solo_cfgs:  # each member built exactly as its solo run builds it
        pl.seed_everything(solo.seed, workers=True, verbose=False)
        tasks.append(build_task(solo))
        models.append(build_model(solo, tasks[-1]))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    info = {**run_info(cfg, models[0], tasks[0]), "population": len(members)}
    module = PopulationModule(
        PopulationStack(models),
        stack_member_data(tasks),
        [m.lr for m in members],
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        clip=cfg.trainer.gradient_clip_val,
        config=plain(cfg),
    )

    def results() -> dict[str, Any]:
        return summarise(module, tasks, members, info["params"], info)

    # clipped per member by the module, not by the trainer
    return Job(module, None, info, results, tasks[0].objective, gradient_clip_val=None)


def summarise(
    module: PopulationModule,
    tasks: list[TaskDataModule],
    members: list[Member],
    params: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Every member's metrics, computed as its solo run computes them; the best member (by the
    task objective) on top, so the file keeps the solo metrics.json contract."""
    rows = []
    for k, (task, member) in enumerate(zip(tasks, members, strict=True)):
        model, diverged = module.population.member(k), not bool(module.alive[k])
        rows.append(null_floats({**asdict(member), **final_metrics(model, diverged, task, params)}))
    objective, sign = tasks[0].objective, 1 if tasks[0].objective_direction == "maximize" else -1
    ranked = [k for k, r in enumerate(rows) if r.get(objective) is not None]
    best = max(ranked, key=lambda k: sign * rows[k][objective]) if ranked else 0
    return {**info, **rows[best], "members": rows}
