"""Population training: K independent models of one shape trained in one set of kernels.

``model.population=K`` builds K solo models exactly as K solo runs would and runs all K with
``torch.func.vmap`` over the solo model (``functional_call`` on the members' parameters,
stacked [K, ...] at every forward): the op count of one model, K times the work per op.

    member k = the solo run  python train.py seed=s_k optimizer.lr=lr_k ... trainer.max_steps=n_k

Per-member settings: ``model.members={<name>: [K values], ...}`` with the names of
``MEMBER_KEYS`` (name -> the solo run's config key). A missing list means every member takes
the run's own value (seeds ``seed + k``). Each is exact, not approximated:

* ``seed``, ``gate_bias``, ``recurrent_scale``, ``input_scale``, ``bias_init``: member k is
  built by its solo config (seeded, its own cell keys) and kept as its own submodule; the
  gate bias is a buffer of the cell (``gate_bias_value``), stacked and vmapped like the weights;
* ``samples`` (the capacity task): member k's own training set, padded to max b_k with a
  mask; its loss is the mean over its own b_k samples, so its gradient is the solo gradient.
  Every other task (parentheses, arithmetic, ...): the members share the population's data set
  and batch order (its ``task.seed``), each scored by the task's own loss and metrics, so
  member k is the solo run ``seed=s_k task.seed=<the population's>``
  (``rnncap.core.population_data``);
* ``lr``, ``momentum``, ``weight_decay``: one torch optimiser with one parameter group per
  member (its own parameters and settings): torch's own update of each group is the solo
  update; ``momentum`` only where the optimiser has it (SGD, RMSprop);
* ``gamma``: each group's rate is multiplied by its own gamma every step, as the solo run's
  ``ExponentialLR`` does (``MemberDecay``);
* ``clip`` (``trainer.gradient_clip_val``; null = none): ``clip_grad_norm_`` on each member's
  gradients, as Lightning clips a solo run;
* ``max_steps`` (``trainer.max_steps``): the trainer runs max n_k steps; member k is frozen after
  its own n_k (its gradients dropped, so the optimiser leaves it and its state alone).

A member whose loss becomes non-finite is ``diverged`` and frozen; the others go on. Every
``trainer.val_check_interval`` steps each active member's task objective is computed and,
when a tuner linked the run (``trial.*``), reported to its trial; members the pruner stops are
``pruned`` and frozen. Metrics are computed from each member's final weights, so they are the
solo run's.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from rnncap.base.errors import ConfigError
from rnncap.cells.base import RecurrentCell
from rnncap.core.build import Job, build_model, build_task, final_metrics, plain, run_info
from rnncap.core.population_data import MemberSets, PopulationData, SharedSet
from rnncap.core.stack import RecurrentStack
from rnncap.core.trial_report import TrialReporter, build_reporter
from rnncap.core.validate import validate
from rnncap.tasks.base import TaskDataModule
from rnncap.tasks.capacity import CapacityTask

log = logging.getLogger(__name__)
# model.members.<name> -> the solo run's config key it sets
MEMBER_KEYS: dict[str, str] = {
    "seed": "seed",
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay",
    "gamma": "scheduler.gamma",
    "clip": "trainer.gradient_clip_val",
    "gate_bias": "cell.gate_bias",
    "recurrent_scale": "cell.recurrent_scale",
    "input_scale": "cell.input_scale",
    "bias_init": "cell.bias_init",
    "samples": "task.samples",
    "max_steps": "trainer.max_steps",
}
_ABSENT = object()


@dataclass(frozen=True)
class Member:
    """One member's settings (``MEMBER_KEYS``): the solo run it reproduces. ``momentum`` is
    None for an optimiser without it, ``gamma`` None without a scheduler."""

    seed: int
    lr: float
    momentum: float | None
    weight_decay: float
    gamma: float | None
    clip: float | None
    gate_bias: float
    recurrent_scale: float
    input_scale: float
    bias_init: float
    samples: int
    max_steps: int


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


def _has_key(cfg: DictConfig, path: str) -> bool:
    return OmegaConf.select(cfg, path, default=_ABSENT) is not _ABSENT


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
    columns: dict[str, list[Any]] = {}
    for name, path in MEMBER_KEYS.items():
        values = _member_list(cfg, name, size)
        if values is not None and not _has_key(cfg, path):
            group = path.split(".")[0]
            node = cfg.get(group) or {}  # an optimiser is named by its class: Adam -> adam
            option = node.get("name") or str(node.get("_target_", group)).split(".")[-1].lower()
            raise ConfigError(
                f"model.members.{name} sets {path}, which {group}={option} does not have"
            )
        if values is None:
            default = OmegaConf.select(cfg, path, default=None)
            values = [cfg.seed + k for k in range(size)] if name == "seed" else [default] * size
        columns[name] = values
    return [Member(**{name: columns[name][k] for name in MEMBER_KEYS}) for k in range(size)]


def member_config(cfg: DictConfig, member: Member, index: int = 0) -> DictConfig:
    """The solo run's config for one member (validated like any run's)."""
    solo = copy.deepcopy(cfg)
    with open_dict(solo):
        if shares_data(cfg):  # one data set: the population's, whatever the member's seed
            solo.task.seed = cfg.task.seed
        for name, path in MEMBER_KEYS.items():
            if _has_key(solo, path):
                OmegaConf.update(solo, path, getattr(member, name), merge=False)
        solo.model.population, solo.model.members = 1, None
    try:
        validate(solo)
    except ConfigError as err:
        raise ConfigError(f"population member {index}: {err}") from None
    return solo


def shares_data(cfg: DictConfig) -> bool:
    """Whether the members of ``cfg``'s population share one data set (every task but the
    capacity task, whose members each draw their own b_k samples)."""
    return not issubclass(get_class(cfg.task._target_), CapacityTask)


def population_refusal(cfg: DictConfig) -> str | None:
    """Why ``cfg``'s task cannot train as a population (None: it can): the capacity task
    trains full batch. The run and the sweeper prefix it with their own key."""
    if not shares_data(cfg) and cfg.task.get("batch_size") is not None:
        return "trains the capacity task full batch: set task.batch_size=null"
    return None


def check_population(cfg: DictConfig) -> list[DictConfig]:
    """Validate the population keys; return the K members' solo configs."""
    if (reason := population_refusal(cfg)) is not None:
        raise ConfigError(f"model.population={cfg.model.population} {reason}")
    members = member_settings(cfg)
    if shares_data(cfg) and len({m.samples for m in members}) > 1:
        raise ConfigError(
            f"model.members.samples: the members of task={cfg.task.name} share one data set; "
            "give one task.samples (per-member samples are for the capacity task)"
        )
    return [member_config(cfg, m, k) for k, m in enumerate(members)]


# ---------------------------------------------------------------------- model
class PopulationStack(nn.Module):
    """K RecurrentStacks of one shape, kept as submodules and run together with vmap."""

    def __init__(self, models: list[RecurrentStack]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.size = len(models)
        self.names = [name for name, _ in models[0].named_parameters()]
        self.buffer_names = [name for name, _ in models[0].named_buffers()]
        template = copy.deepcopy(models[0])
        for cell in template.modules():
            if isinstance(cell, RecurrentCell):
                cell.use_native = False  # vmap cannot batch the fused kernels
        # not registered as a submodule: a template whose own tensors are never used
        self._template = (template.to("meta"),)

    def _state(self, which: list[int]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The parameters and buffers of members ``which``, stacked: [K', ...]. ``torch.stack``
        is differentiable, so each member's gradient lands on its own tensors."""
        members = [self.members[k] for k in which]
        params = zip(*(list(m.parameters()) for m in members), strict=True)
        buffers = zip(*(list(m.buffers()) for m in members), strict=True)
        return (
            {n: torch.stack(p) for n, p in zip(self.names, params, strict=True)},
            {n: torch.stack(b) for n, b in zip(self.buffer_names, buffers, strict=True)},
        )

    def forward(self, x: Tensor, which: list[int] | None = None) -> Tensor:
        """x [K', B, T, I] -> readouts [K', B, T, O]: member ``which[j]`` (default: all, in
        order) on x[j] with its own weights. Members left out cost nothing and get no gradient."""
        template = self._template[0]
        which = list(range(len(self.members))) if which is None else which

        def solo(params: dict[str, Tensor], buffers: dict[str, Tensor], xk: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (xk,))

        return vmap(solo)(*self._state(which), x)

    def member(self, k: int) -> RecurrentStack:
        """Member k as a solo RecurrentStack (its own submodule)."""
        return self.members[k]


# ---------------------------------------------------------------------- training
def member_gradients(
    population: PopulationStack, active: list[bool], clips: list[float | None]
) -> None:
    """Before the optimiser step: drop the gradients of inactive members (torch optimisers
    skip parameters without one: no move, no state change) and clip each active member's
    gradient norm to its own ``clips[k]`` (None: no clipping), as Lightning clips a solo run."""
    for model, on, clip in zip(population.members, active, clips, strict=True):
        if not on:
            for p in model.parameters():
                p.grad = None
        elif clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)


class MemberDecay(LRScheduler):
    """``ExponentialLR`` with one gamma per parameter group: lr_k <- lr_k * gamma_k per step."""

    def __init__(self, optimizer: torch.optim.Optimizer, gammas: list[float]) -> None:
        self.gammas = list(gammas)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:  # the initial step: the rates as set
            return [group["lr"] for group in groups]
        return [group["lr"] * gamma for group, gamma in zip(groups, self.gammas, strict=True)]


class PopulationModule(pl.LightningModule):
    """Trains a PopulationStack with per-member optimiser settings, clipping, step counts,
    divergence and pruning."""

    def __init__(
        self,
        population: PopulationStack,
        data: PopulationData,
        members: list[Member],
        optimizer: Any,
        evaluate_every: int | None = None,
        reporter: TrialReporter | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.population, self.data, self.settings = population, data, members
        self.optimizer_factory, self.reporter = optimizer, reporter
        self.evaluate_every = evaluate_every
        size = len(members)
        self.register_buffer("alive", torch.ones(size, dtype=torch.bool))
        self.register_buffer("pruned", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("member_steps", torch.zeros(size, dtype=torch.long))
        limits = torch.tensor([m.max_steps for m in members], dtype=torch.long)
        self.register_buffer("max_steps", limits, persistent=False)
        self.save_hyperparameters({"config": config or {}})
        self.last_losses: Tensor | None = None

    def active(self) -> Tensor:
        """Members that still train: alive, not pruned, short of their own step count: [K]."""
        return self.alive & ~self.pruned & (self.member_steps < self.max_steps)

    def train_dataloader(self) -> DataLoader:
        return self.data.loader(start_step=lambda: self.trainer.global_step)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """One step of the active members only (the others are frozen and not computed):
        each one's loss on its batch, backward, per-member clipping, the optimiser."""
        x = batch[0]
        flags = self.active().tolist()
        which = [k for k, on in enumerate(flags) if on]
        if not which:
            self.trainer.should_stop = True
            return
        losses = self.data.losses(self.population, batch, which)
        finite = torch.isfinite(losses.detach())
        last = (
            self.last_losses
            if self.last_losses is not None
            else x.new_full(self.alive.shape, math.nan)
        )
        self.last_losses = last.clone().index_copy_(
            0, torch.tensor(which, device=x.device), losses.detach()
        )
        self.alive[which] &= finite
        flags = self.active().tolist()
        if not any(flags):
            self.trainer.should_stop = True
            return
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(torch.where(finite, losses, 0.0).sum())
        member_gradients(self.population, flags, [m.clip for m in self.settings])
        optimizer.step()
        self.lr_schedulers().step()
        self.member_steps += torch.tensor(flags, device=self.member_steps.device).long()
        step = self.trainer.global_step
        if step % self.trainer.log_every_n_steps == 0:  # Lightning's log costs a step's work
            self.log("train/loss_mean", losses[finite].mean(), prog_bar=True)
        if self.evaluate_every and step % self.evaluate_every == 0:
            self.evaluate(step, batch, flags)
        if not self.active().any():
            self.trainer.should_stop = True

    @torch.no_grad()
    def evaluate(self, step: int, batch: tuple[Tensor, ...], flags: list[bool]) -> list:
        """The task objective of each member that trained this step (None for the others),
        reported to the tuner's trials when linked; the members it prunes are frozen."""
        which = [k for k, on in enumerate(flags) if on]
        values: list[float | None] = [None] * len(flags)
        for k, value in zip(
            which, self.data.objectives(self.population, batch, which), strict=True
        ):
            values[k] = value
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            task = self.data.task
            best = max(finite) if task.objective_direction == "maximize" else min(finite)
            self.log(f"val/{task.objective}_best", best)
        if self.reporter is not None:
            for k, prune in enumerate(self.reporter.report(step, values)):
                if prune:
                    log.info("population member %d pruned at step %d", k, step)
                    self.pruned[k] = True
        return values

    def configure_optimizers(self) -> Any:
        groups = []
        for model, member in zip(self.population.members, self.settings, strict=True):
            group = {"params": list(model.parameters()), "lr": member.lr}
            group["weight_decay"] = member.weight_decay
            if member.momentum is not None:
                group["momentum"] = member.momentum
            groups.append(group)
        # foreach: each group's update in a few multi-tensor kernels instead of a loop over
        # its tensors (per-step overhead is most of a small population's step on a CPU)
        optimizer = self.optimizer_factory(groups, foreach=True)
        gammas = [1.0 if m.gamma is None else m.gamma for m in self.settings]
        return {"optimizer": optimizer, "lr_scheduler": MemberDecay(optimizer, gammas)}


def null_floats(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def population_job(cfg: DictConfig) -> Job:
    """``model.population`` members built exactly as their solo runs, trained as one module;
    results: the best member's keys at the top level, plus ``population`` and ``members``."""
    members = member_settings(cfg)
    solo_cfgs = check_population(cfg)
    shared = shares_data(cfg)
    tasks, models = [], []
    for solo in solo_cfgs:  # each member built exactly as its solo run builds it
        pl.seed_everything(solo.seed, workers=True, verbose=False)
        tasks.append(tasks[0] if shared and tasks else build_task(solo))  # shared: one set
        models.append(build_model(solo, tasks[-1]))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    info = {**run_info(cfg, models[0], tasks[0]), "population": len(members)}
    data = SharedSet(tasks[0], info["params"]) if shared else MemberSets(tasks)
    module = PopulationModule(
        PopulationStack(models),
        data,
        members,
        optimizer=instantiate(cfg.optimizer),
        evaluate_every=cfg.trainer.val_check_interval,
        reporter=build_reporter(cfg, members=len(members)),
        config=plain(cfg),
    )

    def results() -> dict[str, Any]:
        return summarise(module, tasks, members, info["params"], info)

    # clipped per member by the module, not by the trainer; it runs the longest member's steps
    steps = max(m.max_steps for m in members)

    def trained() -> list[nn.Module]:
        return [module.population.member(k) for k in range(len(members))]

    return Job(module, None, info, results, trained, tasks[0].objective, None, max_steps=steps)


def summarise(
    module: PopulationModule,
    tasks: list[TaskDataModule],
    members: list[Member],
    params: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Every member's settings (``MEMBER_KEYS``; ``steps`` is its ``trainer.max_steps``),
    status and metrics, computed as its solo run computes them; the best member (by the task
    objective) on top, so the file keeps the solo metrics.json contract."""
    rows = []
    for k, (task, member) in enumerate(zip(tasks, members, strict=True)):
        model, diverged = module.population.member(k), not bool(module.alive[k])
        metrics = final_metrics(model, diverged, task, params)
        if bool(module.pruned[k]) and metrics["status"] == "ok":
            metrics["status"] = "pruned"
        settings = asdict(member)
        rows.append(null_floats({**settings, **metrics, **settings}))
    objective, sign = tasks[0].objective, 1 if tasks[0].objective_direction == "maximize" else -1
    ranked = [k for k, r in enumerate(rows) if r.get(objective) is not None]
    best = max(ranked, key=lambda k: sign * rows[k][objective]) if ranked else 0
    return {**info, **rows[best], "members": rows}
