"""Population training: K independent models of one shape trained in one set of kernels.

``model.population=K`` builds K solo models exactly as K solo runs would and runs all K with
``torch.func.vmap`` over the solo model (``functional_call`` on the members' parameters,
stacked [K, ...] at every forward): the op count of one model, K times the work per op.

    member k = the solo run  python train.py seed=s_k optimizer.lr=lr_k ... trainer.max_steps=n_k

Per-member settings: ``model.members={<name>: [K values], ...}`` with the names of
``MEMBER_KEYS`` (name -> the solo run's config key). A missing list means every member takes
the run's own value (seeds ``seed + k``). Each is exact, not approximated:

* ``seed``, ``gate_bias``, ``recurrent_scale``, ``input_scale``, ``bias_init``,
  ``recurrent_init``: member k is built by its solo config (seeded, its own cell keys) and kept
  as its own submodule; the gate bias is a buffer of the cell (``gate_bias_value``), stacked
  and vmapped like the weights;
* ``nonlinearity``: members are run with one vmap per cell structure (``structure``: module
  types, nonlinearities, tensor shapes), their readouts put back in member order;
* ``samples`` (the capacity task): member k's own training set, padded to max b_k with a
  mask; its loss is the mean over its own b_k samples (or over its own minibatch of
  ``task.batch_size`` of them, drawn as its solo run draws it; ``batch_size`` per member too,
  padded to the largest with the mask), so its gradient is the solo gradient.
  Every other task (parentheses, arithmetic, ...): the members share the population's data set
  and batch order (its ``task.seed``), each scored by the task's own loss and metrics, so
  member k is the solo run ``seed=s_k task.seed=<the population's>``
  (``rnncap.core.population_data``);
* ``optimizer`` (the option name: adam, rmsprop, sgd), ``lr``, ``momentum``,
  ``weight_decay``: one torch optimiser per class among the members, one parameter group per
  member (its own parameters and its solo optimiser settings): torch's own update of each
  group is the solo update. A member whose class differs from the run's ``optimizer`` takes
  that class's schema defaults and the run's values of the keys both have (lr, weight_decay);
  ``momentum`` only where its optimiser has it (null: its optimiser's own value);
* ``gamma``: each group's rate is multiplied by its own gamma every step, as the solo run's
  ``ExponentialLR`` does (``MemberDecay``);
* ``clip`` (``trainer.gradient_clip_val``; null = none): ``clip_grad_norm_`` on each member's
  gradients, as Lightning clips a solo run;
* ``max_steps`` (``trainer.max_steps``): the trainer runs max n_k steps; member k is frozen after
  its own n_k (its gradients dropped, so the optimiser leaves it and its state alone).

A member whose loss becomes non-finite is ``diverged`` and frozen; the others go on. Every
``trainer.val_check_interval`` steps each active member's task objective is computed and,
when a tuner linked the run (``trial.*``), reported to its trial; members the pruner stops are
``pruned`` and frozen. ``model.halving`` runs successive halving over the members
(``rnncap.core.halving``): the best 1/eta continue from their state, rung after rung. Metrics
are computed from each member's final weights, so they are the solo run's; a task scored in
bits adds the convergence record (``rnncap.core.convergence``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from rnncap.cells.base import RecurrentCell
from rnncap.core.build import Job, build_model, build_task, final_metrics, plain, run_info
from rnncap.core.convergence import CHECKPOINT_KEY, ConvergenceRecord
from rnncap.core.halving import RungCheckpoint, Schedule, halving_schedule, ranked
from rnncap.core.module import LOSS_KEYS, LOSSES_KEY
from rnncap.core.population_data import MemberSets, PopulationData, SharedSet
from rnncap.core.population_members import (
    MEMBER_KEYS,
    OPTIONAL_MEMBER_KEYS,
    Member,
    check_population,
    member_settings,
    population_refusal,
    search_refusal,
    shares_data,
)
from rnncap.core.stack import RecurrentStack
from rnncap.core.trial_report import TrialReporter, build_reporter
from rnncap.tasks.base import TaskDataModule

log = logging.getLogger(__name__)
__all__ = [  # the population's settings, as the sweeper and the tests import them
    "MEMBER_KEYS",
    "OPTIONAL_MEMBER_KEYS",
    "PopulationModule",
    "population_job",
    "population_refusal",
    "search_refusal",
]


# ---------------------------------------------------------------------- model
def structure(model: nn.Module) -> str:
    """What vmap needs members to share: module types, nonlinearities, tensor names and shapes.
    Members that differ only in values (seed, init type, scales) share it."""
    parts = [
        f"{name}:{type(m).__name__}:{getattr(m, 'nonlinearity', '')}"
        for name, m in model.named_modules()
    ]
    parts += [
        f"{n}{tuple(t.shape)}" for n, t in (*model.named_parameters(), *model.named_buffers())
    ]
    return "|".join(parts)


class PopulationStack(nn.Module):
    """K RecurrentStacks kept as submodules and run together with vmap: one vmap per
    structure (``structure``), so members may differ in nonlinearity as well as in values."""

    def __init__(self, models: list[RecurrentStack]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.size = len(models)
        kinds: dict[str, int] = {}
        self.kind = [kinds.setdefault(structure(m), len(kinds)) for m in models]
        firsts = [self.kind.index(g) for g in range(len(kinds))]
        self.names = [[name for name, _ in models[k].named_parameters()] for k in firsts]
        self.buffer_names = [[name for name, _ in models[k].named_buffers()] for k in firsts]
        templates = []
        for k in firsts:
            template = copy.deepcopy(models[k])
            for cell in template.modules():
                if isinstance(cell, RecurrentCell):
                    cell.use_native = False  # vmap cannot batch the fused kernels
            templates.append(template.to("meta"))
        # not registered as submodules: templates whose own tensors are never used
        self._templates = tuple(templates)

    def _state(self, kind: int, which: list[int]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The parameters and buffers of members ``which`` (all of structure ``kind``),
        stacked: [K', ...]. ``torch.stack`` is differentiable, so each member's gradient lands
        on its own tensors."""
        members = [self.members[k] for k in which]
        params = zip(*(list(m.parameters()) for m in members), strict=True)
        buffers = zip(*(list(m.buffers()) for m in members), strict=True)
        return (
            {n: torch.stack(p) for n, p in zip(self.names[kind], params, strict=True)},
            {n: torch.stack(b) for n, b in zip(self.buffer_names[kind], buffers, strict=True)},
        )

    def _run(self, kind: int, x: Tensor, which: list[int]) -> Tensor:
        if len(which) == 1:  # one member: its own module, as its solo run (fused kernels)
            return self.members[which[0]](x[0]).unsqueeze(0)
        template = self._templates[kind]

        def solo(params: dict[str, Tensor], buffers: dict[str, Tensor], xk: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (xk,))

        return vmap(solo)(*self._state(kind, which), x)

    def forward(self, x: Tensor, which: list[int] | None = None) -> Tensor:
        """x [K', B, T, I] -> readouts [K', B, T, O]: member ``which[j]`` (default: all, in
        order) on x[j] with its own weights. Members left out cost nothing and get no gradient."""
        which = list(range(len(self.members))) if which is None else which
        kinds = sorted({self.kind[k] for k in which})
        if len(kinds) == 1:
            return self._run(kinds[0], x, which)
        parts, order = [], []
        for kind in kinds:
            rows = [j for j, k in enumerate(which) if self.kind[k] == kind]
            parts.append(self._run(kind, x[rows], [which[j] for j in rows]))
            order += rows
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[back.to(x.device)]

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
        optimizers: list[dict[str, Any]],
        evaluate_every: int | None = None,
        reporter: TrialReporter | None = None,
        config: dict[str, Any] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.population, self.data, self.settings = population, data, members
        self.optimizer_settings, self.reporter = optimizers, reporter
        self.evaluate_every, self.schedule = evaluate_every, schedule
        # the convergence record (rnncap.core.convergence): tasks scored in bits
        self.record = ConvergenceRecord() if data.task.objective == "bits" else None
        self.rung_ended = False  # read (and reset) by RungCheckpoint after the step
        size = len(members)
        self.register_buffer("rung", torch.zeros((), dtype=torch.long))
        self.register_buffer("alive", torch.ones(size, dtype=torch.bool))
        self.register_buffer("pruned", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("member_steps", torch.zeros(size, dtype=torch.long))
        limits = torch.tensor([m.max_steps for m in members], dtype=torch.long)
        self.register_buffer("max_steps", limits, persistent=False)
        self.save_hyperparameters({"config": config or {}})
        # each member's training loss at its first and at its last trained step: [K]
        self.first_losses: Tensor | None = None
        self.last_losses: Tensor | None = None

    def active(self) -> Tensor:
        """Members that still train: alive, not pruned, short of their own step count: [K]."""
        return self.alive & ~self.pruned & (self.member_steps < self.max_steps)

    def train_dataloader(self) -> DataLoader:
        return self.data.loader(start_step=lambda: self.trainer.global_step)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """One step of the active members only (the others are frozen and not computed):
        each one's loss on its batch, backward, per-member clipping, the optimiser."""
        device = self.alive.device
        flags = self.active().tolist()
        which = [k for k, on in enumerate(flags) if on]
        if not which:
            self.trainer.should_stop = True
            return
        losses = self.data.losses(self.population, batch, which)
        finite = torch.isfinite(losses.detach())
        last = self.last_losses  # on the host after a resume
        last = torch.full(self.alive.shape, math.nan) if last is None else last
        self.last_losses = last.to(device).index_copy_(
            0, torch.tensor(which, device=device), losses.detach()
        )
        if self.first_losses is None:
            self.first_losses = self.last_losses.clone()
        self.alive[which] &= finite
        flags = self.active().tolist()
        if not any(flags):
            self.trainer.should_stop = True
            return
        for optimizer in self.optimizer_list():
            optimizer.zero_grad()
        self.manual_backward(torch.where(finite, losses, 0.0).sum())
        member_gradients(self.population, flags, [m.clip for m in self.settings])
        self.optimizer_step()
        self.member_steps += torch.tensor(flags, device=self.member_steps.device).long()
        step = self.trainer.global_step
        if self.record is not None:
            samples = self.data.step_samples
            self.record.step((k, samples(k)) for k, on in enumerate(flags) if on)
        if step % self.trainer.log_every_n_steps == 0:  # Lightning's log costs a step's work
            mean = losses[finite].mean()
            self.log("train/loss_mean", mean, prog_bar=True, batch_size=len(which))
        if self.evaluate_every and step % self.evaluate_every == 0:
            values = self.evaluate(step, batch, flags)
            if self.record is not None and self.schedule is None:
                self.record.add(len(self.record.rows), step, values)
        rungs = self.schedule.rungs if self.schedule is not None else ()
        if int(self.rung) < len(rungs) and step == rungs[int(self.rung)]:
            self.end_rung(step, flags)
        if not self.active().any():
            self.trainer.should_stop = True

    @torch.no_grad()
    def end_rung(self, step: int, flags: list[bool]) -> None:
        """Successive halving at a rung end: score every training member, record the row,
        keep the best 1/eta (all at the top rung) and prune the others, freeing their
        optimiser state; the checkpoint follows this step (``RungCheckpoint``)."""
        assert self.schedule is not None
        which = [k for k, on in enumerate(flags) if on]
        values = self.data.objectives(self.population, None, which)
        rung = int(self.rung)
        if self.record is not None:
            self.record.add(rung, step, values)
        if rung + 1 < len(self.schedule.rungs):
            maximize = self.data.task.objective_direction == "maximize"
            order = ranked(list(values), maximize)
            dropped = [which[j] for j in order[self.schedule.survivors(len(which)) :]]
            for k in dropped:
                self.pruned[k] = True
                self.free_optimizer_state(k)
            kept = len(which) - len(dropped)
            log.info("rung %d ends at step %d: %d of %d continue", rung, step, kept, len(which))
        self.rung += 1
        self.rung_ended = True

    def free_optimizer_state(self, k: int) -> None:
        """Member k leaves the optimisers: its moments and step counts are dropped."""
        for optimizer in self.optimizer_list():
            for p in self.population.members[k].parameters():
                optimizer.optimizer.state.pop(p, None)

    def on_train_start(self) -> None:
        if self.record is not None:
            self.record.start()

    def on_train_end(self) -> None:
        if self.record is not None:
            self.record.load_state_dict(self.record.state_dict())  # stop the wall clock

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[CHECKPOINT_KEY] = self.record.state_dict()
        losses = {"first": self.first_losses, "final": self.last_losses}
        checkpoint[LOSSES_KEY] = {n: None if v is None else v.tolist() for n, v in losses.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None and CHECKPOINT_KEY in checkpoint:
            self.record.load_state_dict(checkpoint[CHECKPOINT_KEY])
        saved = [checkpoint.get(LOSSES_KEY, {}).get(n) for n in ("first", "final")]
        self.first_losses, self.last_losses = (v if v is None else torch.tensor(v) for v in saved)

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
            self.log(f"val/{task.objective}_best", best, batch_size=len(which))
        if self.reporter is not None:
            for k, prune in enumerate(self.reporter.report(step, values)):
                if prune:
                    log.info("population member %d pruned at step %d", k, step)
                    self.pruned[k] = True
        return values

    def optimizer_list(self) -> list[torch.optim.Optimizer]:
        """The optimisers (one per class in the population), Lightning's wrappers."""
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def scheduler_list(self) -> list[LRScheduler]:
        schedulers = self.lr_schedulers()
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def optimizer_step(self) -> None:
        """Every optimiser's step and decay; only the first through Lightning's wrapper, which
        counts the step (each wrapped step would add one to the global step)."""
        for j, optimizer in enumerate(self.optimizer_list()):
            (optimizer if j == 0 else optimizer.optimizer).step()
        for scheduler in self.scheduler_list():
            scheduler.step()

    def configure_optimizers(self) -> Any:
        """One torch optimiser per class among the members, one parameter group per member with
        the member's solo optimiser settings (``self.optimizer_settings[k]``), and one
        ``MemberDecay`` per optimiser."""
        classes: dict[str, list[int]] = {}
        for k, settings in enumerate(self.optimizer_settings):
            classes.setdefault(settings["_target_"], []).append(k)
        optimizers, schedulers = [], []
        for target, ks in classes.items():
            groups = []
            for k in ks:
                options = {
                    n: v
                    for n, v in self.optimizer_settings[k].items()
                    if n not in ("_target_", "_partial_")
                }
                groups.append({"params": list(self.population.members[k].parameters()), **options})
            # foreach: each group's update in a few multi-tensor kernels instead of a loop over
            # its tensors (per-step overhead is most of a small population's step on a CPU)
            optimizer = get_class(target)(groups, foreach=True)
            gammas = [1.0 if self.settings[k].gamma is None else self.settings[k].gamma for k in ks]
            optimizers.append(optimizer)
            schedulers.append(MemberDecay(optimizer, gammas))
        return optimizers, schedulers


def null_floats(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def population_job(cfg: DictConfig) -> Job:
    """``model.population`` members built exactly as their solo runs, trained as one module;
    results: the best member's keys at the top level, plus ``population`` and ``members``."""
    members = member_settings(cfg)
    schedule = halving_schedule(cfg)
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
        optimizers=[plain(solo.optimizer) for solo in solo_cfgs],
        evaluate_every=cfg.trainer.val_check_interval,
        reporter=build_reporter(cfg, members=len(members)),
        config=plain(cfg),
        schedule=schedule,
    )
    if schedule is not None:
        info["halving"] = {"eta": schedule.eta, "rungs": list(schedule.rungs)}

    def results() -> dict[str, Any]:
        out = summarise(module, tasks, members, info["params"], info)
        if module.record is not None:
            out["convergence"] = final_rows(module, out["members"])
        return out

    # clipped per member by the module, not by the trainer; it runs the longest member's steps
    # (under successive halving: the top rung's)
    steps = max(m.max_steps for m in members) if schedule is None else schedule.rungs[-1]
    callbacks = [] if schedule is None else [RungCheckpoint(Path(cfg.output_dir) / "checkpoints")]

    def trained() -> list[nn.Module]:
        return [module.population.member(k) for k in range(len(members))]

    return Job(
        module, None, info, results, trained, tasks[0].objective, None, callbacks, max_steps=steps
    )


def final_rows(module: PopulationModule, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The convergence record, closed by a row at the final step when the last evaluation
    came earlier (the members' final bits)."""
    record = module.record
    assert record is not None
    steps = int(module.member_steps.max())
    if not record.rows or record.rows[-1]["steps"] < steps:
        record.add(len(record.rows), steps, [r.get("bits") for r in rows])
    return record.rows


def summarise(
    module: PopulationModule,
    tasks: list[TaskDataModule],
    members: list[Member],
    params: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Every member's settings (``MEMBER_KEYS``; ``steps`` is its ``trainer.max_steps``), the
    steps it trained (``trained_steps``: fewer when it diverged or was pruned), status and
    metrics, computed as its solo run computes them; the best member (by the task
    objective) on top, so the file keeps the solo metrics.json contract."""
    rows = []
    for k, (task, member) in enumerate(zip(tasks, members, strict=True)):
        model, diverged = module.population.member(k), not bool(module.alive[k])
        metrics = final_metrics(model, diverged, task, params)
        if bool(module.pruned[k]) and metrics["status"] == "ok":
            metrics["status"] = "pruned"
        settings = asdict(member)
        trained = {"trained_steps": int(module.member_steps[k])}
        for key, losses in zip(LOSS_KEYS, (module.first_losses, module.last_losses), strict=True):
            trained[key] = None if losses is None else float(losses[k])  # non-finite: null
        rows.append(null_floats({**settings, **metrics, **settings, **trained}))
    objective, sign = tasks[0].objective, 1 if tasks[0].objective_direction == "maximize" else -1
    ranked = [k for k, r in enumerate(rows) if r.get(objective) is not None]
    best = max(ranked, key=lambda k: sign * rows[k][objective]) if ranked else 0
    return {**info, **rows[best], "members": rows}
