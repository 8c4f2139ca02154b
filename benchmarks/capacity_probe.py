"""What one training setting stores on the capacity task, outside the framework: a bare PyTorch
loop (``nn.RNN``, tanh, one thread) over b distinct random binary inputs at the first of T
steps and random labels, bits = b (1 - H2(p)) from the final weights (rnncap.base.metrics).
A probe for the settings that a search space should cover (benchmarks/README.md "Time to
quality: the annealed protocol"), not a measurement of the framework.

    python benchmarks/capacity_probe.py --samples 2000 --lr 0.02 --steps 40000 \
        --schedule cos --batch 500 --seed 0
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnncap.base.metrics import stored_bits
from rnncap.tasks.capacity import distinct_binary_rows

SCHEDULES = ("const", "cos", "lin", "exp")


def rate_scale(schedule: str, done: float, final: float) -> float:
    """The rate's multiplier after fraction ``done`` of the steps: constant, cosine or linear
    to zero, or exponential to ``final`` of the start."""
    if schedule == "cos":
        return 0.5 * (1 + math.cos(math.pi * done))
    if schedule == "lin":
        return 1 - done
    if schedule == "exp":
        return final**done
    return 1.0


def loss_of(kind: str, logits: Tensor, labels: Tensor) -> Tensor:
    if kind == "hinge":
        return F.relu(1 - (2 * labels - 1) * logits).mean()
    if kind == "sqhinge":
        return (F.relu(1 - (2 * labels - 1) * logits) ** 2).mean()
    return F.binary_cross_entropy_with_logits(logits, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="b")
    parser.add_argument("--hidden", type=int, default=14, help="units (14: 463 parameters)")
    parser.add_argument("--input-dim", type=int, default=16)
    parser.add_argument("--time-steps", type=int, default=5, help="T")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam's initial rate")
    parser.add_argument("--steps", type=int, default=40000)
    parser.add_argument("--schedule", choices=SCHEDULES, default="cos")
    parser.add_argument("--final", type=float, default=1e-2, help="exp: the last step's scale")
    parser.add_argument("--loss", choices=["ce", "hinge", "sqhinge"], default="ce")
    parser.add_argument("--batch", type=int, default=0, help="minibatch (0: full batch)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 <= args.batch <= args.samples:
        parser.error(f"--batch={args.batch}: must be 0 (full batch) or at most --samples")
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(args.seed)
    inputs = torch.zeros(args.samples, args.time_steps, args.input_dim)
    inputs[:, 0] = distinct_binary_rows(args.samples, args.input_dim, generator).float()
    labels = torch.randint(0, 2, (args.samples,), generator=generator).float()
    torch.manual_seed(args.seed)
    rnn, readout = nn.RNN(args.input_dim, args.hidden, batch_first=True), nn.Linear(args.hidden, 1)
    nn.init.orthogonal_(rnn.weight_hh_l0)
    params = [*rnn.parameters(), *readout.parameters()]
    count = sum(p.numel() for p in params)
    optimizer = torch.optim.Adam(params, lr=args.lr)

    def logits(x: Tensor) -> Tensor:
        return readout(rnn(x)[0][:, -1])[:, 0]

    def bits_per_param() -> float:
        with torch.no_grad():
            correct = ((logits(inputs) > 0).float() == labels).float().mean().item()
        return stored_bits(args.samples, correct) / count

    start = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * rate_scale(args.schedule, step / args.steps, args.final)
        rows = torch.randint(0, args.samples, (args.batch,)) if args.batch else slice(None)
        loss = loss_of(args.loss, logits(inputs[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % max(args.steps // 8, 1) == 0:
            wall = time.perf_counter() - start
            print(f"step {step + 1}: {bits_per_param():.3f} bits/param, {wall:.0f} s", flush=True)
    print(f"params {count}; bits/param {bits_per_param():.3f}")


if __name__ == "__main__":
    main()
