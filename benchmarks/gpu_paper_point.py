"""The paper's capacity point on one GPU, in one command: the 463-parameter tanh RNN
(model.budget=500, task.input_dim=16), many settings from sweep=capacity in full populations,
successive halving into long training; then the population throughput rows of
benchmarks/run.py. Prints bits/param, the convergence curve (best bits against compute and
wall time, the point's jobs concatenated as analysis reads them) and whether the last doubling
of compute still added bits.

    python benchmarks/gpu_paper_point.py                      # one H100: 512 settings in 2
                                                              # populations of 256, rungs 500,
                                                              # 2000, 8000, 32000 steps (eta 4)
    python benchmarks/gpu_paper_point.py --tiny --device cpu  # the same protocol in seconds
    python benchmarks/gpu_paper_point.py --sweep annealed     # over sweep=annealed's ranges

Everything it writes goes to --out (default: a fresh temporary folder): the sweep's runs and
study, and ``paper_point.json`` (the numbers printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rnncap.analysis.convergence import MEASURED, doubling_gain, point_curve, verdict

ROOT = Path(__file__).resolve().parents[1]

PAPER = {
    "budget": 500,
    "population": 256,
    "trials": 512,
    "eta": 4,
    "min_steps": 500,
    "max_steps": 32000,
}
TINY = {"budget": 60, "population": 8, "trials": 16, "eta": 2, "min_steps": 10, "max_steps": 40}


def sweep_command(
    size: dict[str, int], device: str, out: Path, sweep: str = "capacity"
) -> list[str]:
    """train.py -m over ``sweep`` (capacity: the uncapped space; annealed: minibatch Adam
    annealed by the top rung) for the tanh RNN at ``size``, populations with halving."""
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        f"sweep={sweep}",
        "cell=rnn",
        "cell.nonlinearity=tanh",
        f"model.budget={size['budget']}",
        f"hydra.sweeper.population={size['population']}",
        f"hydra.sweeper.n_trials={size['trials']}",
        "hydra.sweeper.sampler.seed=0",
        f"model.halving.eta={size['eta']}",
        f"model.halving.min_steps={size['min_steps']}",
        f"trainer.max_steps={size['max_steps']}",
        "trainer.checkpoint_every=null",  # a checkpoint at each rung end all the same
        f"hardware={'gpu' if device == 'cuda' else 'cpu'}",
        "save_weights=false",
        f"hydra.sweep.dir={out / 'runs'}",
        f"hydra.sweeper.storage=sqlite:///{out / 'studies.db'}",
    ]


def job_metrics(runs: Path) -> list[dict[str, Any]]:
    """The sweep's jobs' metrics.json, in job order (Hydra's numbered job folders)."""
    found = [p for p in runs.glob("*/metrics.json") if p.parent.name.isdigit()]
    return [json.loads(p.read_text()) for p in sorted(found, key=lambda p: int(p.parent.name))]


def point_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The point's convergence curve (``rnncap.analysis.convergence.point_curve``: the jobs'
    rows in job order, compute and wall time offset, best bits a running maximum), each row
    with its job's rung, steps and members."""
    curve = point_curve(jobs) or []
    own = [row for job in jobs for row in job.get("convergence", [])]
    keys = ("rung", "steps", "members")
    return [{**{k: r[k] for k in keys}, **c} for r, c in zip(own, curve, strict=True)]


def final_bits(jobs: list[dict[str, Any]]) -> float | None:
    """The point's capacity as the capacity table counts it: the most bits of a measured job's
    best member, from its final weights (the curve's running maximum may be higher: a member
    scored at a rung end that trained on and lost bits)."""
    bits = [job.get("bits") for job in jobs if job.get("status") in MEASURED]
    bits = [b for b in bits if isinstance(b, int | float) and math.isfinite(b)]
    return max(bits) if bits else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny size (CPU, seconds)")
    parser.add_argument(
        "--sweep",
        choices=["capacity", "annealed"],
        default="capacity",
        help="the search space (conf/sweep/): the uncapped one, or the annealed-minibatch one",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    parser.add_argument(
        "--no-throughput", action="store_true", help="skip benchmarks/run.py's population rows"
    )
    args = parser.parse_args()
    size = TINY if args.tiny else PAPER
    out = (args.out or Path(tempfile.mkdtemp(prefix="rnncap-paper-point-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("sweep:", " ".join(sweep_command(size, args.device, out, args.sweep)[2:]), flush=True)
    subprocess.run(sweep_command(size, args.device, out, args.sweep), check=True, cwd=out, env=env)
    jobs = job_metrics(out / "runs")
    if not jobs:
        sys.exit("error: the sweep wrote no metrics.json")
    params = jobs[0]["params"]
    curve = point_rows(jobs)
    best = final_bits(jobs)
    if best is None:
        sys.exit("error: no member of the sweep stored any bits (all diverged?)")
    searched = curve[-1]["best_bits"] if curve else None
    gain = doubling_gain(curve, params)
    state = verdict(gain)
    result = {
        "params": params,
        "settings": sum(job["population"] for job in jobs),
        "jobs": len(jobs),
        "rungs": jobs[0].get("halving", {}).get("rungs"),
        "bits": best,
        "bits_per_param": best / params,
        "best_evaluated_bits": searched,
        "last_doubling_gain_bits_per_param": gain,
        "convergence": state,
        "curve": curve,
    }
    print(
        f"\nparams {params}, {result['settings']} settings in {len(jobs)} populations, "
        f"rungs {result['rungs']}"
    )
    print(
        f"{'rung':>4} {'steps':>6} {'members':>7} {'compute':>12} {'wall_s':>8} "
        f"{'best_bits':>9} {'bits/param':>10}"
    )
    for r in curve:
        print(
            f"{r['rung']:>4} {r['steps']:>6} {r['members']:>7} {r['compute']:>12.4g} "
            f"{r['wall_s']:>8.1f} {r['best_bits']:>9.1f} {r['best_bits'] / params:>10.3f}"
        )
    print(
        f"bits/param {best / params:.3f}; last doubling of compute added "
        f"{gain:.3f} bits/param: {state}"
    )
    if searched is not None and searched > best:
        print(
            f"(a rung end measured {searched / params:.3f} bits/param in weights that trained on "
            "and lost bits: the capacity counts final weights only)"
        )
    (out / "paper_point.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_throughput:
        bench = [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--parts",
            "population",
            "--device",
            args.device,
            "--json",
            str(out / "throughput.json"),
        ]
        subprocess.run([*bench, *(["--quick"] if args.tiny else [])], check=True, env=env)
    print("written:", out / "paper_point.json")


if __name__ == "__main__":
    main()
