"""Time to quality: the best bits per parameter that the tuning protocols reach on the
capacity point of the 463-parameter tanh RNN (``task=capacity``, input_dim 16, T = 5, depth 1,
``model.budget=500``: H = 14) at equal wall time on 2 cores. Run by
``python benchmarks/run.py --parts tuning`` (see benchmarks/README.md).

Modes, one after another, each given the same wall-clock budget (a sweeper process that is
stopped at the budget: what finished by then counts, nothing after it):

- ``gp``: a solo study, one trial per job (``sweep=gp``: the shared and the task's capacity
  space, 1000-10000 full-batch steps per trial);
- ``population_pruned``: ``sweep=tpe``, populations of 8, Optuna's successive-halving pruner,
  300-1500 steps per trial, optimiser, nonlinearity and recurrent init fixed (the setting of
  the 2026-12-02 trials-per-hour round);
- ``capacity``: the capacity protocol (``sweep=capacity``: b from 1x to 12x the parameters,
  minibatches, every key per member) in populations of 32 with successive halving
  (``model.halving``) into long training: 32 x 250 -> 8 x 1000 -> 2 x 4000 -> 1 x 16000 steps;
- ``capacity_focused``: the same with the initialisation and the optimiser class at their
  defaults and minibatches of 128-500;
- ``annealed``: the protocol over ``sweep=annealed`` (minibatch Adam, b 3.5x-5x the budget, the
  rate annealed to 1e-3..1e-1 of itself by the top rung) in populations of 16, halved from
  2500 steps into 40000: 16 x 2500 -> 4 x 10000 -> 1 x 40000.

All: sampler seed 0, ``hydra/launcher=joblib hydra.sweeper.n_jobs=2`` (2 worker processes,
``OMP_NUM_THREADS=1``, one torch thread each), no periodic checkpoints. A mode's clock starts
at its sweeper's process start (imports included). A solo or pruned trial counts when its job
returns; a successive-halving job counts at each rung end, read from its ``metrics.json``
convergence record or, for a job stopped at the budget, from the record in its last rung
checkpoint (``checkpoints/last.ckpt``, written at each rung end).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FINISHED = ("COMPLETE", "PRUNED")
Curve = list[tuple[float, float]]  # (seconds of the mode's budget, best bits/param so far)

COMMON = {
    **{"task": "capacity", "cell": "rnn", "depth": "1", "cell.nonlinearity": "tanh"},
    **{"model.budget": "500", "hydra.sweeper.sampler.seed": "0"},
    **{"hydra.sweeper.n_trials": "1000000", "hydra.sweeper.n_jobs": "2"},
    "hydra/launcher": "joblib",
    **{"trainer.checkpoint_every": "null", "trainer.enable_progress_bar": "false"},
    "save_weights": "false",
}
PRUNER = {
    "hydra.sweeper.pruner": "successive_halving",
    "hydra.sweeper.pruner_args": "{min_resource:250,reduction_factor:3}",
}
MODES: dict[str, dict[str, str]] = {
    "gp": {"sweep": "gp", "trainer.val_check_interval": "250"},
    "population_pruned": {
        **{"sweep": "tpe", "optimizer": "adam", "cell.recurrent_init": "orthogonal"},
        **{"hydra.sweeper.population": "8", **PRUNER, "trainer.val_check_interval": "250"},
        "trainer.max_steps": "int(tag(log, interval(300, 1500)))",
    },
    "capacity": {
        **{"sweep": "capacity", "hydra.sweeper.population": "32", "model.halving.eta": "4"},
        **{"model.halving.min_steps": "250", "trainer.max_steps": "16000"},
        "trainer.val_check_interval": "16000",  # halving scores at rung ends; nothing else
    },
}
# the same protocol with the initialisation and the optimiser class at their defaults, and
# minibatches of 128-500 (the space's range starts at 16)
MODES["capacity_focused"] = MODES["capacity"] | {
    **{"optimizer": "adam", "cell.recurrent_init": "orthogonal", "cell.input_scale": "1.0"},
    **{"cell.recurrent_scale": "1.0", "cell.bias_init": "0.0"},
    "task.batch_size": "int(tag(log, interval(128, 500)))",
}
# sweep=annealed: Adam on minibatches of 0.6x-1.2x the budget, b 3.5x-5x, the rate annealed to
# 1e-3..1e-1 of itself by the top rung; 16 x 2500 -> 4 x 10000 -> 1 x 40000 steps per job
MODES["annealed"] = {
    **{"sweep": "annealed", "hydra.sweeper.population": "16", "model.halving.eta": "4"},
    **{"model.halving.min_steps": "2500", "trainer.max_steps": "40000"},
    "trainer.val_check_interval": "40000",
}
# --quick (a test's size, seconds): a 60-parameter budget, tens of steps, a few trials that end
# on their own well inside the budget
QUICK_STEPS = {"model.budget": "60", "trainer.max_steps": "int(tag(log, interval(20, 40)))"}
QUICK: dict[str, dict[str, str]] = {
    "gp": {**QUICK_STEPS, "trainer.val_check_interval": "10", "hydra.sweeper.n_trials": "2"},
    "population_pruned": {
        **QUICK_STEPS,
        "hydra.sweeper.pruner_args": "{min_resource:10,reduction_factor:3}",
        **{"trainer.val_check_interval": "10", "hydra.sweeper.n_trials": "8"},
    },
    "capacity": {
        **{"model.budget": "60", "hydra.sweeper.population": "4", "model.halving.eta": "2"},
        **{"model.halving.min_steps": "10", "trainer.max_steps": "40"},
        **{"trainer.val_check_interval": "40", "hydra.sweeper.n_trials": "8"},
    },
}
QUICK["capacity_focused"] = QUICK["capacity"] | {"task.batch_size": "16"}
QUICK["annealed"] = QUICK["capacity"]


def mode_overrides(mode: str, quick: bool = False) -> list[str]:
    """The mode's ``train.py -m`` overrides, each key once (--quick's values replace)."""
    settings = COMMON | MODES[mode] | (QUICK[mode] if quick else {})
    return ["-m", *(f"{key}={value}" for key, value in settings.items())]


def storage(out: Path, mode: str) -> str:
    return f"journal:///{(out / mode / 'study.log').resolve()}"


def run_mode(mode: str, out: Path, budget_s: float, quick: bool = False) -> tuple[float, float]:
    """One mode's sweep, stopped at ``budget_s`` (its process group: SIGTERM, then SIGKILL);
    returns its (start, end) wall-clock times."""
    folder = out / mode
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "train.py", *mode_overrides(mode, quick)]
    command += [f"hydra.sweeper.storage={storage(out, mode)}", f"hydra.sweeper.study_name={mode}"]
    command += [f"hydra.sweeper.timeout={budget_s}", f"hydra.sweep.dir={(folder / 'runs')}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with open(folder / "sweeps.log", "a") as log:
        start = time.time()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            end = time.time()
            stop_group(proc)
            return start, end
        end = time.time()
    if code != 0:
        raise RuntimeError(f"{mode}: the sweep exited with {code}; see {folder / 'sweeps.log'}")
    return start, end


def stop_group(proc: subprocess.Popen) -> None:
    """End a sweep's process group (the sweeper and its joblib workers): SIGTERM, then SIGKILL
    after 5 s, so that no worker holds a core into the next mode's budget."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def slice_clock(slices: list[tuple[float, float]]) -> Callable[[float], float]:
    """Wall-clock time -> seconds of the mode's budget spent by then (slices concatenated)."""

    def elapsed(t: float) -> float:
        spent = 0.0
        for start, end in slices:
            if t <= end:
                return spent + max(t - start, 0.0)
            spent += end - start
        return spent

    return elapsed


def trial_params(trial: Any) -> int:
    """The model's parameter count: the trial's ``metrics.params``, else its metrics.json."""
    params = trial.user_attrs.get("metrics.params")
    if params is None:
        params = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        params = params["params"]
    return int(params)


def load_trials(storage_url: str, study_name: str) -> list[Any]:
    """The study's finished (COMPLETE or PRUNED) trials in completion order."""
    import optuna

    from rnncap.core.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, str(ROOT)))
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]
    return sorted(done, key=lambda t: t.datetime_complete)


def trial_curve(done: list[Any], elapsed: Callable[[float], float]) -> Curve:
    """(budget seconds, best bits/param so far) at every new best finished trial."""
    curve: Curve = []
    best = -math.inf
    for trial in done:
        feasible = trial.state.name == "COMPLETE" and math.isfinite(trial.value)
        if feasible and trial.value > best:
            best = trial.value
            at = elapsed(trial.datetime_complete.timestamp())
            curve.append((round(at, 1), trial.value / trial_params(trial)))
    return curve


def job_record(job: Path) -> tuple[list[dict], float, int] | None:
    """A halving job's convergence rows, the wall-clock time its training ended (or its last
    rung checkpoint was written) minus the record's wall seconds (so that a row's time is that
    plus its ``wall_s``), and the model's parameter count; None before its first rung end."""
    metrics = job / "metrics.json"
    if metrics.exists():
        data = json.loads(metrics.read_text())
        rows = data.get("convergence") or []
        if not rows:
            return None
        return rows, metrics.stat().st_mtime - rows[-1]["wall_s"], int(data["params"])
    checkpoint = job / "checkpoints" / "last.ckpt"
    if not checkpoint.exists():
        return None
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False).get("convergence")
    if not state or not state["rows"]:
        return None
    return state["rows"], checkpoint.stat().st_mtime - state["wall_s"], logged_params(job)


def logged_params(job: Path) -> int:
    """The parameter count from the job's ``model: {...}`` log line (rnncap.core.run)."""
    for line in (job / "train.log").read_text().splitlines():
        if " - model: {" in line:
            return int(ast.literal_eval(line.split(" - model: ", 1)[1])["params"])
    raise ValueError(f"{job}: no model line in train.log")


def rung_curve(jobs: Sequence[Path], elapsed: Callable[[float], float]) -> tuple[Curve, int]:
    """(budget seconds, best bits/param so far) at every new best rung end of the jobs, and the
    number of rung ends read."""
    points = []
    for job in jobs:
        record = job_record(job)
        if record is None:
            continue
        rows, origin, params = record
        points += [
            (elapsed(origin + r["wall_s"]), r["best_bits"] / params)
            for r in rows
            if r["best_bits"] is not None
        ]
    curve: Curve = []
    for at, value in sorted(points):
        if not curve or value > curve[-1][1]:
            curve.append((round(at, 1), value))
    return curve, len(points)


def job_dirs(runs: Path) -> list[Path]:
    """Hydra's numbered job folders, in job order."""
    found = [p for p in runs.glob("*") if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def mode_row(
    mode: str, out: Path, slices: list[tuple[float, float]], budget_s: float
) -> tuple[dict, Curve]:
    """A mode's row and curve: its trials, jobs, wall time and the best bits/param reached
    within the budget, with the budget second at which it was reached."""
    done = load_trials(storage(out, mode), mode)
    elapsed = slice_clock(slices)
    jobs = job_dirs(out / mode / "runs")
    if "model.halving.eta" in MODES[mode]:
        curve, rung_ends = rung_curve(jobs, elapsed)
    else:
        curve, rung_ends = trial_curve(done, elapsed), None
    wall = sum(end - start for start, end in slices)
    inside = [p for p in curve if p[0] <= budget_s]
    job_s = [t.duration.total_seconds() for t in done if t.duration is not None]
    row = {
        "mode": mode,
        "budget_s": budget_s,
        "wall_s": round(wall, 1),
        "trials": len(done),
        "jobs": len(jobs),
        "rung_ends": rung_ends,
        "best_bits_per_param": round(inside[-1][1], 4) if inside else None,
        "best_at_s": inside[-1][0] if inside else None,
        "pruned": sum(t.state.name == "PRUNED" for t in done),
        "diverged": sum(t.user_attrs.get("status") == "diverged" for t in done),
        "trials_per_hour": round(len(done) / wall * 3600, 1) if wall > 0 else None,
        "median_trial_s": round(statistics.median(job_s), 1) if job_s else None,
    }
    return row, curve


def bench_tuning(
    out: Path, budget_s: float, quick: bool = False, modes: Sequence[str] | None = None
) -> tuple[list[dict], dict]:
    """Every mode (or ``modes``) in turn, each given ``budget_s`` seconds of wall clock."""
    rows, curves = [], {}
    for mode in modes or MODES:
        slices = [run_mode(mode, out, budget_s, quick)]
        row, curves[mode] = mode_row(mode, out, slices, budget_s)
        rows.append(row)
        print(f"{mode}: {row['wall_s']:.0f} s, best {row['best_bits_per_param']}", flush=True)
        (out / "rows.json").write_text(json.dumps({"rows": rows, "curves": curves}) + "\n")
    return rows, curves


def plot_tuning(rows: list[dict], curves: dict[str, Curve], path: Path) -> None:
    """Best-so-far bits per parameter against the mode's wall clock, one line a mode, drawn to
    the end of its run; a mode with nothing finished is named in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        mode, curve = row["mode"], curves[row["mode"]]
        if not curve:
            ax.plot([], [], label=f"{mode}: nothing finished in {row['wall_s']:.0f} s")
            continue
        x, y = zip(*curve, strict=True)
        (line,) = ax.step([*x, row["wall_s"]], [*y, y[-1]], where="post", label=mode)
        ax.plot(x, y, "o", markersize=4, color=line.get_color())
    budget = max(r["budget_s"] for r in rows)
    ax.axvline(budget, color="grey", linestyle=":", linewidth=1, label="budget")
    ax.set_xlim(0, max(budget, *(r["wall_s"] for r in rows)) * 1.02)
    ax.set_xlabel("wall-clock seconds since the mode's start (2 cores)")
    ax.set_ylabel("best bits / parameter so far")
    ax.set_title("Time to quality: 463-parameter tanh RNN, capacity task")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
