"""rnncap benchmarks: cells vs PyTorch's fused RNNs, population training, Lightning overhead and
FLOP utilisation. Every ratio is measured side by side in one process (round-robin repeats,
medians), never in a test.

    python benchmarks/run.py --quick --json bench.json               # CPU, 2 threads
    python benchmarks/run.py --device cuda --json bench-gpu.json     # GPU (cuDNN reference)

See benchmarks/README.md for what each number means and the measured tables.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # tuning.py

from rnncap.cells import GRUCell, IntersectionCell, LSTMCell, RNNCell, UGRNNCell  # noqa: E402
from rnncap.core.population import PopulationStack, member_gradients  # noqa: E402
from rnncap.core.population_data import member_losses  # noqa: E402
from rnncap.core.resolvers import register_resolvers  # noqa: E402
from rnncap.core.schema import register_configs  # noqa: E402
from rnncap.core.stack import RecurrentStack  # noqa: E402

register_resolvers()  # the benchmarks compose configs as train.py does
register_configs()


def config_cells() -> dict[str, tuple[Callable[..., nn.Module], int]]:
    """Every ``conf/cell`` option as ``name -> (factory(I, N), gates G)``, built with the
    settings its composed config gives the cell (a new cell is benchmarked without edits)."""
    from hydra.utils import get_class

    from rnncap.core.build import compose_run_config, constructor_kwargs

    cells = {}
    for path in sorted((ROOT / "conf" / "cell").glob("*.yaml")):
        kwargs = constructor_kwargs(compose_run_config([f"cell={path.stem}"], ROOT / "conf").cell)
        cls = get_class(kwargs.pop("_target_"))
        cells[path.stem] = (functools.partial(cls, **kwargs), cls.num_gates)
    return cells


REFERENCE_CELLS: dict[str, tuple[Callable[..., nn.Module], int]] = {  # PyTorch's fused RNNs
    "nn.GRU": (lambda i, n: nn.GRU(i, n), 3),
    "nn.LSTM": (lambda i, n: nn.LSTM(i, n), 4),
    "nn.RNN": (lambda i, n: nn.RNN(i, n), 1),
}
# the native-kernel cells forced onto the step loop
LOOP_CELLS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "rnn-loop": (lambda i, n: _loop(RNNCell(i, n)), 1),
    "lstm-loop": (lambda i, n: _loop(LSTMCell(i, n, gate_bias=1.0)), 4),
}


def _loop(cell: nn.Module) -> nn.Module:
    cell.use_native = False
    return cell


def _compiled(cell: nn.Module, mode: bool | str = True) -> nn.Module:
    cell.compile_step = mode
    return cell


# the step-loop cells compiled (cell.compile=true / reduce-overhead), added with --compiled
COMPILED: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "gru-compiled": (lambda i, n: _compiled(GRUCell(i, n, gate_bias=1.0)), 3),
    "ugrnn-compiled": (lambda i, n: _compiled(UGRNNCell(i, n, gate_bias=1.0)), 2),
    "intersection-compiled": (lambda i, n: _compiled(IntersectionCell(i, n, gate_bias=1.0)), 4),
}
# GPU only: CUDA graphs, of the compiled step (reduce-overhead) or of the whole layer's
# forward and backward (torch.cuda.make_graphed_callables; marked "graphed")
GRAPHED: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "gru-reduce-overhead": (
        lambda i, n: _compiled(GRUCell(i, n, gate_bias=1.0), "reduce-overhead"),
        3,
    ),
    "gru-graphed": (lambda i, n: GRUCell(i, n, gate_bias=1.0), 3),
    "gru-compiled-graphed": (lambda i, n: _compiled(GRUCell(i, n, gate_bias=1.0)), 3),
    "ugrnn-compiled-graphed": (lambda i, n: _compiled(UGRNNCell(i, n, gate_bias=1.0)), 2),
    "intersection-compiled-graphed": (
        lambda i, n: _compiled(IntersectionCell(i, n, gate_bias=1.0)),
        4,
    ),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def race(fns: dict[str, Callable[[], Any]], device, repeats: int, inner: int) -> dict[str, float]:
    """Median ms per call of each fn, timed round-robin (side by side) after a warm-up."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - start) * 1e3 / inner)
    return {name: statistics.median(v) for name, v in samples.items()}


# ---------------------------------------------------------------------- cells
def cell_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training step's compute (forward + backward) of one layer on x [T, B, I]."""

    def step() -> None:
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        module.zero_grad(set_to_none=True)
        out.square().mean().backward()

    return step


def bench_cells(
    device, steps: int, batch: int, hidden: int, repeats: int, compiled: bool = False
) -> list[dict]:
    x = torch.randn(steps, batch, hidden, device=device)
    cells = REFERENCE_CELLS | config_cells() | LOOP_CELLS
    if compiled:
        cells |= COMPILED | (GRAPHED if device.type == "cuda" else {})
    modules, setup_s = {}, {}
    for name, (make, _) in cells.items():
        start = time.perf_counter()
        module = make(hidden, hidden).to(device)
        if name.endswith("graphed"):
            module = torch.cuda.make_graphed_callables(module, (x,))
        cell_step(module, x)()  # first call: compiles / captures
        sync(device)
        modules[name], setup_s[name] = module, time.perf_counter() - start
    ms = race({n: cell_step(m, x) for n, m in modules.items()}, device, repeats, inner=3)
    flops = {n: 3 * 2 * steps * batch * g * hidden * 2 * hidden for n, (_, g) in cells.items()}
    per_flop_gru = ms["nn.GRU"] / flops["nn.GRU"]
    return [
        {
            "cell": name,
            "ms_per_step": round(ms[name], 4),
            "gflop_per_step": round(flops[name] / 1e9, 4),
            "ratio_vs_gru": round(ms[name] / flops[name] / per_flop_gru, 3),
            "first_call_s": round(setup_s[name], 2),
            "T": steps,
            "B": batch,
            "H": hidden,
        }
        for name in cells
    ]


# ---------------------------------------------------------------------- population
def capacity_data(k: int, samples: int, device, steps: int = 5, dim: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(k, samples, steps, dim)
    x[:, :, 0] = torch.randint(0, 2, (k, samples, dim), generator=g).float()
    y = torch.randint(0, 2, (k, samples), generator=g).float()
    return x.to(device), y.to(device), torch.ones(k, samples, device=device)


def capacity_models(cell: type, hidden: int, k: int, depth: int = 1) -> list[RecurrentStack]:
    return [RecurrentStack(cell, depth, 16, hidden, 1) for _ in range(k)]


def solo_step(model: RecurrentStack, x, y) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def step() -> None:
        loss = F.binary_cross_entropy_with_logits(model(x)[:, -1, 0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def population_step(
    population: PopulationStack, x, y, mask, foreach: bool = True
) -> Callable[[], None]:
    """One full-batch Adam step of every member, as the population module trains: one torch
    optimiser with one parameter group per member (foreach: multi-tensor kernels, as
    ``PopulationModule.configure_optimizers``), ``member_gradients`` before the step."""
    groups = [{"params": list(m.parameters()), "lr": 0.01} for m in population.members]
    optimizer = torch.optim.Adam(groups, foreach=foreach)
    active, clips = [True] * population.size, [None] * population.size

    def step() -> None:
        losses = member_losses(population(x), y, mask)
        optimizer.zero_grad()
        losses.sum().backward()
        member_gradients(population, active, clips)
        optimizer.step()

    return step


def capacity_flops(cell: type, hidden: int, samples: int, steps: int = 5, dim: int = 16) -> int:
    """Matmul FLOPs of one full-batch training step (forward x3 for the backward pass)."""
    forward = 2 * samples * steps * (cell.num_gates * hidden * (dim + hidden) + hidden)
    return 3 * forward


def bench_population(device, sizes, k: int, repeats: int) -> list[dict]:
    rows = []
    for cell, hidden, samples in sizes:
        models = capacity_models(cell, hidden, k)
        x, y, mask = capacity_data(k, samples, device)
        # each contender trains its own copies (a PopulationStack holds the models themselves)
        population = PopulationStack(copy.deepcopy(models)).to(device)
        q = k // 4  # the same K models as 4 populations of K/4 in turn (cache-size check)
        quarter = PopulationStack(copy.deepcopy(models[:q])).to(device)
        solo = models[0].to(device)
        fns = {"solo": solo_step(solo, x[0], y[0]), "pop": population_step(population, x, y, mask)}
        quarter_step = population_step(quarter, x[:q], y[:q], mask[:q])
        fns["quarters"] = lambda f=quarter_step: [f() for _ in range(4)]
        ms = race(fns, device, repeats, inner=2)
        flops = capacity_flops(cell, hidden, samples)
        rows.append(
            {
                "K": k,
                "cell": cell.__name__,
                "hidden": hidden,
                "samples": samples,
                "T": 5,
                "solo_ms_per_step": round(ms["solo"], 4),
                "population_ms_per_step": round(ms["pop"], 4),
                "population_speedup": round(k * ms["solo"] / ms["pop"], 2),
                "quarters_ms_per_step": round(ms["quarters"], 4),
                "quarters_speedup": round(k * ms["solo"] / ms["quarters"], 2),
                "solo_gflops": round(flops / ms["solo"] / 1e6, 3),
                "population_gflops": round(k * flops / ms["pop"] / 1e6, 3),
            }
        )
    return rows


# ---------------------------------------------------------------------- Lightning overhead
def bench_lightning(device, max_steps: int, repeats: int) -> dict:
    """A real run's Lightning step (rnncap.core.build: module and trainer) over a bare loop
    doing the same forward, backward and Adam step, on the default capacity job."""
    import logging

    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from rnncap.core.build import (
        build_model,
        build_module,
        build_task,
        build_trainer,
        compose_run_config,
    )

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    overrides = [f"trainer.max_steps={max_steps}", f"trainer.val_check_interval={max_steps}"]
    overrides += ["trainer.checkpoint_every=null", "trainer.enable_progress_bar=false"]
    if device.type == "cuda":
        overrides.append("hardware=gpu")
    cfg = compose_run_config(overrides, ROOT / "conf", str(Path("/tmp") / "rnncap-bench"))
    task = build_task(cfg)
    warm = max_steps // 5

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == warm:
                sync(device)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module):
            sync(device)
            self.ms = (time.perf_counter() - self.start) * 1e3 / (max_steps - warm)

    def lightning() -> float:
        module = build_module(cfg, build_model(cfg, task), task)
        trainer = build_trainer(cfg, Path(cfg.output_dir), None, cfg.trainer.gradient_clip_val)
        clock = Clock()
        trainer.callbacks.append(clock)
        trainer.fit(module, datamodule=task)
        return clock.ms

    def bare() -> float:
        model = build_model(cfg, task).to(device)
        x, y = (t.to(device) for t in task.train_set.tensors)
        step = solo_step(model, x, y)
        for _ in range(warm):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(max_steps - warm):
            step()
        sync(device)
        return (time.perf_counter() - start) * 1e3 / (max_steps - warm)

    times = {"lightning": [], "bare": []}
    for _ in range(repeats):
        times["lightning"].append(lightning())
        times["bare"].append(bare())
    light, loop = statistics.median(times["lightning"]), statistics.median(times["bare"])
    return {
        "job": OmegaConf.to_container(cfg.task, resolve=True, enum_to_str=True)
        | {"cell": cfg.cell.name},
        "lightning_ms_per_step": round(light, 4),
        "bare_ms_per_step": round(loop, 4),
        "overhead": round(light / loop - 1, 3),
    }


# ---------------------------------------------------------------------- FLOP utilisation
def matmul_peak(device, size: int, repeats: int) -> float:
    """Measured float32 matmul GFLOP/s (size^3 product, full float32: TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    ms = race({"mm": lambda: a @ b}, device, repeats, inner=3)["mm"]
    return 2 * size**3 / ms / 1e6


def flop_utilisation(device, population: list[dict], size: int, repeats: int) -> dict:
    peak = matmul_peak(device, size, repeats)
    best = max(population, key=lambda r: r["population_gflops"])
    return {
        "matmul_peak_gflops": round(peak, 1),
        "solo_step_gflops": best["solo_gflops"],
        "population_step_gflops": best["population_gflops"],
        "solo_utilisation": round(best["solo_gflops"] / peak, 5),
        "population_utilisation": round(best["population_gflops"] / peak, 5),
        "at": {k: best[k] for k in ("K", "cell", "hidden", "samples")},
    }


# ---------------------------------------------------------------------- main
def table(rows: list[dict], keys: list[str]) -> str:
    lines = [" | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(str(r[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def run_tuning(
    out: Path | None,
    minutes: float | None,
    quick: bool,
    json_path: Path | None,
    modes: list[str] | None = None,
) -> dict[str, Any]:
    """The time-to-quality part (benchmarks/tuning.py): rows, curves and a PNG."""
    from tuning import MODES, bench_tuning, plot_tuning

    out = (out or Path(tempfile.mkdtemp(prefix="rnncap-tuning-"))).resolve()
    budget_s = 60 * (minutes or (1.0 if quick else 5.0))
    modes = modes or list(MODES)
    print(f"\ntuning: {len(modes)} modes x {budget_s:.0f} s, studies and runs in {out}", flush=True)
    rows, curves = bench_tuning(out, budget_s, quick, modes)
    keys = ["mode", "budget_s", "wall_s", "trials", "jobs", "rung_ends"]
    keys += ["best_bits_per_param", "best_at_s", "pruned", "diverged", "trials_per_hour"]
    print("\n" + table(rows, keys))
    png = json_path.with_suffix(".png") if json_path else out / "tuning.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_tuning(rows, curves, png)
    print("best bits/param against wall time:", png)
    return {"tuning": rows, "tuning_curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (<5 min)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the compiled (and, on GPU, CUDA-graphed) step-loop cells; default: on GPU only",
    )
    parser.add_argument(
        "--parts",
        default="cells,population,lightning,flops",
        help="comma-separated subset of cells,population,lightning,flops,tuning (tuning: "
        "its modes (--tuning-modes) x --tuning-minutes; not in the default)",
    )
    parser.add_argument(
        "--tuning-out",
        type=Path,
        help="tuning: the modes' studies, sweep dirs and logs (default: a new temporary folder)",
    )
    parser.add_argument(
        "--tuning-minutes",
        type=float,
        help="tuning: wall-clock minutes per mode (default 5; 1 with --quick, a test's size)",
    )
    parser.add_argument(
        "--tuning-modes",
        help="tuning: comma-separated subset of gp,population_pruned,capacity,capacity_focused,"
        "annealed",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    reps = 5 if args.quick else 15
    cell_sizes = [(16, 64, 128)] if args.quick else [(16, 64, 64), (16, 64, 128), (32, 128, 256)]
    if gpu:
        cell_sizes = [(32, 256, 256)] if args.quick else [(32, 256, 128), (32, 256, 512)]
    pop_sizes = [(GRUCell, 16, 100), (GRUCell, 16, 1000), (RNNCell, 32, 1000)]
    if not args.quick:
        pop_sizes += [(GRUCell, 16, 300), (GRUCell, 16, 3000), (LSTMCell, 16, 1000)]
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "quick": args.quick,
    }
    compiled = gpu if args.compiled is None else args.compiled
    if "cells" in parts:
        results["cells"] = [
            r for s in cell_sizes for r in bench_cells(device, *s, reps, compiled=compiled)
        ]
        keys = ["cell", "T", "B", "H", "ms_per_step", "ratio_vs_gru", "first_call_s"]
        print(table(results["cells"], keys), flush=True)
    if "population" in parts or "flops" in parts:
        results["population"] = bench_population(device, pop_sizes, 64, reps)
        keys = ["K", "cell", "hidden", "samples", "solo_ms_per_step", "population_ms_per_step"]
        keys += ["population_speedup", "quarters_speedup"]
        print("\n" + table(results["population"], keys), flush=True)
    if "lightning" in parts:
        results["lightning_overhead"] = bench_lightning(device, 150 if args.quick else 500, 3)
        print("\nlightning_overhead:", json.dumps(results["lightning_overhead"]), flush=True)
    if "flops" in parts:
        peak_size = (4096 if gpu else 1024) if args.quick else (8192 if gpu else 2048)
        pop = results["population"]
        results["flop_utilisation"] = flop_utilisation(device, pop, peak_size, reps)
        print("flop_utilisation:", json.dumps(results["flop_utilisation"]))
    if "tuning" in parts:
        modes = args.tuning_modes.split(",") if args.tuning_modes else None
        results |= run_tuning(args.tuning_out, args.tuning_minutes, args.quick, args.json, modes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
