"""The tasks beyond capacity: seeded data, labels against independent implementations,
metrics on hand-computed cases, and the text8 loader's checks."""

from __future__ import annotations

import hashlib
import math
import re
import zipfile

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import TASK_NAMES, compose_cfg, tiny_task, tiny_text
from torch import nn

from rnncap.base.errors import ConfigError
from rnncap.cells.lstm import LSTMCell
from rnncap.cells.rnn import RNNCell
from rnncap.core.build import instantiate_task
from rnncap.core.stack import RecurrentStack
from rnncap.tasks.arithmetic import ArithmeticTask
from rnncap.tasks.counting import CountingTask, SaturationCounter, step_loops
from rnncap.tasks.distance import DistanceTask, recalled_bits
from rnncap.tasks.memory import MemoryTask, squared_correlation
from rnncap.tasks.parentheses import ParenthesesTask
from rnncap.tasks.rcf import RCFTask, random_function
from rnncap.tasks.text8 import ALPHABET, Text8Task


def data_of(task) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The (training, evaluation) tensors of a task (a text task's: its character codes)."""
    task.setup()
    sets = task.train_set, task.eval_set
    return tuple(s.tensors if hasattr(s, "tensors") else (s.codes,) for s in sets)


# tasks whose data do not depend on the seed (the seed orders their batches)
SEED_FREE_DATA = {"text8": "a fixed text, split at fixed fractions"}


@pytest.mark.parametrize("name", TASK_NAMES)
def test_generators_are_deterministic_per_seed(name, tmp_path):
    """Every task in conf/task: the same seed gives the same data, another seed other data."""

    def make(seed: int):
        cfg = compose_cfg([*tiny_task(name, tmp_path), f"seed={seed}"], tmp_path)
        return instantiate_task(cfg.task)

    first, again, other = data_of(make(1)), data_of(make(1)), data_of(make(2))
    for a, b in zip(first[0] + first[1], again[0] + again[1], strict=True):
        assert torch.equal(a, b)
    if name in SEED_FREE_DATA:
        return
    assert any(not torch.equal(a, b) for a, b in zip(first[0], other[0], strict=True))


# -- memory


def test_memory_data_layout_and_variance():
    task = MemoryTask.with_keys(
        input_dim=16, delay=3, input_scale=2.0, samples=4000, eval_samples=10
    )
    (x, y), (ex, ey) = data_of(task)
    assert x.shape == (4000, 4, 16) and y.shape == (4000, 16)
    assert torch.equal(x[:, 0], y) and x[:, 1:].abs().sum() == 0
    assert y.var().item() == pytest.approx(4.0, rel=0.05)
    uniform = MemoryTask.with_keys(input_dim=16, delay=0, input_scale=2.0, distribution="uniform")
    (_, uy), _ = data_of(uniform)
    assert uy.abs().max() <= 2 * math.sqrt(3) and uy.var().item() == pytest.approx(4, rel=0.05)
    assert not torch.equal(ex[:, 0], x[:10, 0])  # held-out vectors


def test_memory_metrics_by_hand():
    task = MemoryTask.with_keys(input_dim=2, delay=0, input_scale=2.0)
    x = torch.tensor([[1.0, -1.0], [3.0, 1.0]])
    task.eval_sst = 4.0 + 4.0  # columns about their means: (1,3) -> 2; (-1,1) -> 2
    batch = (x[:, None], x)
    zero = task.metrics(torch.zeros(2, 1, 2), batch)
    # sum of squares 2 + 10 = 12, over n_in * s^2 = 8 per sample
    assert zero["mse"].item() == pytest.approx(12 / 8) and zero["count"].item() == 2
    out = task.summarise({k: float(v) for k, v in zero.items()}, params=1)
    assert out["mse"] == pytest.approx(12 / 16) and out["r2"] == pytest.approx(1 - 12 / 8)
    exact = task.summarise({k: float(v) for k, v in task.metrics(x[:, None], batch).items()}, 1)
    assert exact == {"mse": 0.0, "r2": 1.0}
    assert task.loss(torch.zeros(2, 1, 2), batch).item() == pytest.approx(12 / 4 / 4)


def test_squared_correlation_by_hand():
    t = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 2.0]])
    e = torch.tensor([[2.0, 5.0], [4.0, 5.0], [6.0, 5.0]])  # col 0: perfect; col 1: constant
    assert squared_correlation(t, e).tolist() == [1.0, 0.0]
    a, b = torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    assert squared_correlation(a, b).item() == pytest.approx(0.8**2)  # corr = 4/5 by hand


class DelayLine(nn.Module):
    """A fake stack whose top state is [x_t, x_{t-1}, ..., x_{t-lags+1}] (zeros before t=1)."""

    def __init__(self, input_dim: int, lags: int) -> None:
        super().__init__()
        self.lags, self.hidden_size = lags, input_dim * lags
        self.readout = nn.Linear(self.hidden_size, input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        past = [torch.nn.functional.pad(x, (0, 0, k, 0))[:, : x.shape[1]] for k in range(self.lags)]
        return self.readout(torch.cat(past, -1).transpose(0, 1)).transpose(0, 1)


@pytest.mark.parametrize("lags", [1, 2, 3])
def test_memory_capacity_of_a_delay_line(lags):
    task = MemoryTask.with_keys(input_dim=4, mc_delays=4, mc_samples=3000, seed=0)
    mc = task.memory_capacity(DelayLine(4, lags))
    # delays 1..4 of 4 components; the state holds delays 0..lags-1, and delay 0 does not count
    assert mc == pytest.approx(4 * (lags - 1), abs=0.1)


class LinearReservoir(nn.Module):
    """x_t = W x_{t-1} + w u_t from x_0 = 0 (state read after input t), then a linear readout."""

    def __init__(self, W: np.ndarray, w: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("W", torch.as_tensor(W))
        self.register_buffer("w", torch.as_tensor(w))
        self.readout = nn.Linear(len(w), 1, dtype=torch.float64)  # memory_capacity hooks its input

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u [B, T, 1] -> [B, T, 1]
        x, states = torch.zeros(len(u), len(self.w), dtype=torch.float64), []
        for u_t in u.double().unbind(1):
            x = x @ self.W.T + u_t * self.w
            states.append(x)
        return self.readout(torch.stack(states)).transpose(0, 1)  # readout sees [T, B, N]


def test_memory_capacity_of_a_linear_reservoir_matches_its_closed_form():
    # Stationary covariance Sigma = sum_j W^j w w^T W^jT (a discrete Lyapunov equation); for
    # unit-variance i.i.d. u, c_k = Cov(x_t, u_{t-k}) = W^k w, and the optimal linear readout
    # explains MC_k = c_k^T Sigma^-1 c_k of u_{t-k}'s variance.
    rng = np.random.default_rng(0)
    n, k_max, samples = 4, 10, 20_000
    W = rng.standard_normal((n, n))
    W *= 0.7 / abs(np.linalg.eigvals(W)).max()  # the streams' 10-step washout leaves 0.7^22 ~ 4e-4
    w = rng.standard_normal(n)
    sigma = scipy.linalg.solve_discrete_lyapunov(W, np.outer(w, w))
    c = [np.linalg.matrix_power(W, k) @ w for k in range(k_max + 1)]
    mc_k = np.array([ck @ np.linalg.solve(sigma, ck) for ck in c])  # delays 0..k_max
    # Tolerance: 3 standard errors of the summed held-out corr^2, bounding the sum's error by the
    # sum of the delta-method errors 2 r (1 - r^2) / sqrt(samples) (~0.023 here; 20 seeds: sd 0.011)
    r = np.sqrt(mc_k[1:])
    tol = 3 * float((2 * r * (1 - r**2)).sum()) / math.sqrt(samples)
    assert abs(mc_k[:-1].sum() - mc_k[1:].sum()) > 10 * tol  # delays 0..K-1 would fail the test
    task = MemoryTask.with_keys(input_dim=1, mc_delays=k_max, mc_samples=samples, seed=0)
    mc = task.memory_capacity(LinearReservoir(W, w))
    assert mc == pytest.approx(mc_k[1:].sum(), abs=tol)  # 2.999 (delays 0..9 would give 3.994)


def test_memory_evaluate_reports_theory_for_the_width():
    task = MemoryTask.with_keys(
        input_dim=4, delay=0, samples=8, eval_samples=8, mc_delays=2, mc_samples=500
    )
    task.setup()
    out = task.evaluate(DelayLine(4, 1), params=1)
    assert out["theory_mse"] == 0.0 and out.keys() == {"mse", "r2", "theory_mse", "mc"}
    narrow = DelayLine(4, 1)
    narrow.hidden_size = 3
    assert task.evaluate(narrow, 1)["theory_mse"] == 0.25


# -- rcf


def test_rcf_targets_are_a_fixed_function_of_distinct_inputs():
    table = RCFTask.with_keys(samples=200, input_dim=10, steps=3, output_dim=2, function="table")
    (x, y), (ex, ey) = data_of(table)
    assert x.shape == (200, 3, 10) and y.shape == (200, 2) and ex is x and ey is y
    assert len(torch.unique(x[:, 0], dim=0)) == 200 and x[:, 1:].abs().sum() == 0
    assert abs(y.mean().item()) < 0.2 and y.std().item() == pytest.approx(1.0, abs=0.15)
    twice = torch.cat([x[:, 0], x[:, 0]])  # smooth: a function of the input alone
    smooth = random_function(twice, "smooth", 2, torch.Generator().manual_seed(0))
    assert torch.equal(smooth[:200], smooth[200:]) and smooth.std() > 0.1
    task = RCFTask.with_keys(samples=2, output_dim=2)
    out, target = torch.zeros(2, 1, 2), torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    sums = task.metrics(out, (None, target))
    assert sums["mse"].item() == pytest.approx((1 + 4) / 2 + 9 / 2)  # per-sample means, summed
    assert task.summarise({k: float(v) for k, v in sums.items()}, 1) == {"mse": 3.5}


# -- parentheses


def reference_depths(symbols: list[int], streams: int, max_count: int) -> list[list[int]]:
    """Plain-Python nesting depths, capped for output: an independent implementation."""
    depth = dict.fromkeys(range(streams), 0)
    rows = []
    for s in symbols:
        if s < streams:
            depth[s] += 1
        elif s < 2 * streams and depth[s - streams] > 0:
            depth[s - streams] -= 1
        rows.append([min(depth[k], max_count) for k in range(streams)])
    return rows


def test_parentheses_labels_match_an_independent_count():
    task = ParenthesesTask.with_keys(streams=3, noise_symbols=2, max_count=2, steps=40, samples=50)
    (x, y), _ = data_of(task)
    assert x.shape == (50, 40, 8) and y.shape == (50, 40, 3) and (x.sum(-1) == 1).all()
    symbols = x.argmax(-1)
    for row, target in zip(symbols.tolist(), y.tolist(), strict=True):
        assert target == reference_depths(row, 3, 2)
    assert (y == 2).any() and (y == 0).any()  # the cap and the floor both occur
    assert set(symbols.unique().tolist()) == set(range(8))


def test_parentheses_hand_sequence_and_metrics():
    from rnncap.tasks.parentheses import capped_depths

    # streams=2: 0 = "(", 1 = "[", 2 = ")", 3 = "]", 4 = noise; cap 1
    seq = torch.tensor([[2, 0, 0, 4, 1, 2, 3, 3, 2]])
    expect = [[0, 0], [1, 0], [1, 0], [1, 0], [1, 1], [1, 1], [1, 0], [1, 0], [0, 0]]
    assert capped_depths(seq, 2, 1).tolist() == [expect]
    task = ParenthesesTask.with_keys(streams=2, noise_symbols=1, max_count=1)
    targets = torch.tensor([[[0, 1], [1, 1]]])  # B=1, T=2, S=2
    logits = torch.zeros(1, 2, 4)  # classes per stream: 2
    logits[0, 0, 1] = logits[0, 1, 1] = 1.0  # stream 0 predicts 1 at both steps: right once
    logits[0, 0, 3] = logits[0, 1, 3] = 1.0  # stream 1 predicts 1: right twice
    sums = task.metrics(logits, (None, targets))
    assert sums["accuracy"].item() == pytest.approx(3 / 4)
    p = math.exp(1) / (1 + math.exp(1))
    assert sums["loss"].item() == pytest.approx((3 * -math.log(p) - math.log(1 - p)) / 4)


# -- distance


def test_distance_targets_match_plain_python():
    task = DistanceTask.with_keys(
        symbols=5, length=20, delay=6, samples=40, eval_samples=10, seed=3
    )
    (x, y), (ex, ey) = data_of(task)
    assert x.shape == (40, 20, 5) and y.shape == (40, 20) and ey.shape == (10, 20)
    assert (x.sum(-1) == 1).all()
    for row, target in zip(x.argmax(-1).tolist(), y.tolist(), strict=True):
        expect = [-100 if t < 6 else row[t - 6] for t in range(20)]  # -100: unscored
        assert target == expect
    assert set(x.argmax(-1).unique().tolist()) == set(range(5))


def test_distance_metrics_score_only_the_delayed_steps():
    task = DistanceTask.with_keys(symbols=3, length=4, delay=2)
    targets = torch.tensor([[-100, -100, 2, 0]])
    logits = torch.zeros(1, 4, 3)
    logits[0, :, 2] = 1.0  # predicts 2 everywhere: right at step 2, wrong at step 3
    sums = task.metrics(logits, (None, targets))
    p = math.e / (math.e + 2)
    assert sums["accuracy"].item() == pytest.approx(1 / 2)
    assert sums["loss"].item() == pytest.approx((-math.log(p) - math.log((1 - p) / 2)) / 2)
    assert task.loss(logits, (None, targets)).item() == pytest.approx(sums["loss"].item())
    out = task.summarise({"accuracy": 1.0, "loss": 0.5, "count": 2.0}, params=10)
    assert out["accuracy"] == 0.5 and out["recalled_bits"] == recalled_bits(3, 0.5)


@pytest.mark.parametrize(
    ("symbols", "accuracy", "bits"),
    [
        (4, 1.0, 2.0),  # every symbol recalled: log2 K
        (4, 0.25, 0.0),  # chance
        (4, 0.1, 0.0),  # below chance: no information claimed
        (2, 0.75, 1 + 0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)),  # 1 - H2(p)
        (4, 0.5, 2 - 1 - 0.5 * math.log2(3)),  # log2 K - H2(e) - e log2(K-1)
    ],
)
def test_recalled_bits_by_hand(symbols, accuracy, bits):
    assert recalled_bits(symbols, accuracy) == pytest.approx(bits, abs=1e-12)


# -- counting


def reference_walk(coins: list[int]) -> list[int]:
    """Plain-Python Dyck-1 walk: open at depth 0, close when the steps left equal the depth,
    else follow the coin (0 = open): an independent implementation of the generator."""
    depth, symbols = 0, []
    for t, coin in enumerate(coins):
        symbol = 0 if depth == 0 else 1 if depth >= len(coins) - t else coin
        depth += 1 if symbol == 0 else -1
        symbols.append(symbol)
    return symbols


def test_counting_strings_match_plain_python():
    task = CountingTask.with_keys(
        train_length=10, test_lengths=[30, 31], max_count=3, samples=50, eval_samples=20,
        test_samples=20,
    )  # fmt: skip
    (x, y), (ex, ey) = data_of(task)
    generator = torch.Generator().manual_seed(task.config.seed)  # the coins, in the order drawn
    coin_sets = [
        torch.randint(0, 2, (n, t), generator=generator)
        for n, t in [(50, 10), (20, 10), (20, 30), (20, 31)]
    ]
    sets = [(x, y), (ex, ey), *(task.test_sets[n].tensors for n in (30, 31))]
    for coins, (inputs, targets) in zip(coin_sets, sets, strict=True):
        assert (inputs.sum(-1) == 1).all()
        for coin_row, symbols, target in zip(
            coins.tolist(), inputs.argmax(-1).tolist(), targets.tolist(), strict=True
        ):
            assert symbols == reference_walk(coin_row)
            depths = [row[0] for row in reference_depths(symbols, 1, 3)]
            assert target == depths
            assert min(depths) >= 0
    balanced = task.test_sets[30].tensors[0].argmax(-1)
    assert ((1 - 2 * balanced).sum(1) == 0).all()  # even length: every word ends at depth 0
    assert ((1 - 2 * task.test_sets[31].tensors[0].argmax(-1)).sum(1) == 1).all()
    assert (ey == 3).any() and (ey == 0).any()


def test_saturation_counter_by_hand():
    with SaturationCounter() as counter:
        torch.tanh(torch.tensor([0.0, 5.0, -5.0, 0.5]))  # 2 of 4 within 1e-3 of +-1
        torch.tensor([-10.0, 10.0, 0.0]).sigmoid()  # 2 of 3 within 1e-3 of 0 or 1
        torch.relu(torch.tensor([100.0]))  # not counted
    assert (counter.saturated, counter.total) == (4, 7)


@pytest.mark.parametrize(("cell", "gates"), [(RNNCell, 1), (LSTMCell, 5)])
def test_saturation_sees_the_fused_cells_activations(cell, gates):
    """The RNN and LSTM run fused kernels; ``step_loops`` exposes every tanh and sigmoid."""
    torch.manual_seed(0)
    model = RecurrentStack(cell, 2, 2, 3, 4)
    task = CountingTask.with_keys(
        train_length=4, test_lengths=[6], samples=4, eval_samples=2, test_samples=5
    )
    task.setup()
    assert task.saturation(model, task.test_sets[6]) < 0.5
    with SaturationCounter() as counter, step_loops(model):
        model(task.test_sets[6].tensors[0])
    assert counter.total == 5 * 6 * 3 * 2 * gates  # B T N layers, each tanh/sigmoid output
    assert all(layer.use_native for layer in model.layers)  # restored
    with torch.no_grad():
        for layer in model.layers:
            layer.weight_ih.mul_(1000)
            layer.bias.fill_(1000)
    assert task.saturation(model, task.test_sets[6]) > 0.8  # the LSTM's c_1 = 1: tanh 0.76


# -- arithmetic

SYMBOLS = "0123456789+= "
CLASSES = "0123456789."


def test_arithmetic_strings_match_python():
    d = 3
    task = ArithmeticTask.with_keys(max_digits=d, samples=400, eval_samples=10, seed=5)
    (x, y), _ = data_of(task)
    assert x.shape == (400, 3 * d + 4, 13) and y.shape == (400, d + 2)
    lengths = set()
    for inp, target in zip(x.argmax(-1).tolist(), y.tolist(), strict=True):
        text = "".join(SYMBOLS[s] for s in inp)
        match = re.fullmatch(rf" *(0|[1-9]\d*)\+(0|[1-9]\d*)= {{{d + 2}}}", text)
        assert match, text
        a, b = match.groups()
        assert text[: 2 * d + 2] == f"{a}+{b}=".rjust(2 * d + 2)
        answer = f"{int(a) + int(b)}."
        assert "".join(CLASSES[c] for c in target if c >= 0) == answer
        assert target[len(answer) :] == [-100] * (d + 2 - len(answer))
        lengths.update({len(a), len(b)})
    assert lengths == {1, 2, 3}


def test_arithmetic_metrics_by_hand():
    task = ArithmeticTask.with_keys(max_digits=1)
    # answers "7." and "12." (L = 3 answer steps; T = 3 + 4 = 7)
    target = torch.tensor([[7, 10, -100], [1, 2, 10]])
    logits = torch.zeros(2, 7, 11)
    for b, row in enumerate(target.tolist()):
        for i, c in enumerate(row):
            if c >= 0:
                logits[b, 4 + i, c] = 10.0
    logits[1, 5, 2], logits[1, 5, 3] = 0.0, 10.0  # second problem: one wrong digit
    sums = task.metrics(logits, (None, target))
    assert sums["accuracy"].item() == 1.0 and sums["count"].item() == 2
    right = -torch.log_softmax(torch.tensor([10.0] + [0.0] * 10), 0)[0].item()
    wrong = -torch.log_softmax(torch.tensor([10.0] + [0.0] * 10), 0)[1].item()
    expect = (2 * right) / 2 + (2 * right + wrong) / 3
    assert sums["loss"].item() == pytest.approx(expect, rel=1e-5)


# -- text8


def text8_task(tmp_path, raw: bytes, **kwargs) -> Text8Task:
    file = tmp_path / "tiny8"
    file.write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    args = {"seq_len": 10, "eval_chars": None, "size": len(raw), "sha256": sha, **kwargs}
    return Text8Task.with_keys(path=str(file), **args)


def test_text8_split_windows_and_targets(tmp_path):
    raw = tiny_text(2000)
    task = text8_task(tmp_path, raw)
    assert task.split_bounds(100_000_000) == (90_000_000, 95_000_000)  # the standard split
    task.setup()
    x, y = task.train_set.__getitems__([0, 3])
    assert x.shape == (2, 10, 27) and y.shape == (2, 10)
    decoded = "".join(ALPHABET[i] for i in x[1].argmax(-1).tolist())
    assert decoded == raw[30:40].decode()
    assert "".join(ALPHABET[i] for i in y[1].tolist()) == raw[31:41].decode()
    assert len(task.train_set) == (1800 - 1) // 10 and len(task.eval_set) == (100 - 1) // 10
    first_val = "".join(ALPHABET[i] for i in task.eval_set.__getitems__([0])[0][0].argmax(-1))
    assert first_val == raw[1800:1810].decode()
    first_test = task.test_set.__getitems__([0])[1][0].tolist()
    assert "".join(ALPHABET[i] for i in first_test) == raw[1901:1911].decode()


def test_text8_bpc_by_hand(tmp_path):
    task = text8_task(tmp_path, tiny_text(2000))
    task.setup()
    batch = task.eval_set.__getitems__(list(range(len(task.eval_set))))
    uniform = task.metrics(torch.zeros(*batch[1].shape, 27), batch)
    assert uniform["bpc"].item() / uniform["count"].item() == pytest.approx(math.log2(27))
    sure = torch.nn.functional.one_hot(batch[1], 27).float() * 100
    assert task.metrics(sure, batch)["bpc"].item() == pytest.approx(0, abs=1e-6)


def test_text8_checksum_and_size_are_checked(tmp_path):
    raw = tiny_text(500)
    text8_task(tmp_path, raw).setup()  # right size and checksum: loads
    with pytest.raises(ConfigError, match=r"fails its checksum \(task.sha256=0+\)"):
        text8_task(tmp_path, raw, sha256="0" * 64).setup()
    with pytest.raises(ConfigError, match="has 500 bytes, task.size=501 expected"):
        text8_task(tmp_path, raw, size=501).setup()
    with pytest.raises(ConfigError, match=r"holds b'\.' at byte 3"):
        text8_task(tmp_path, b"abc. def", sha256=None, size=None).setup()


def test_text8_downloads_zip_into_cache_once(tmp_path):
    raw = tiny_text(1500)
    source = tmp_path / "mirror" / "text8.zip"
    source.parent.mkdir()
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("text8", raw)
    cache = tmp_path / "data"
    sha = hashlib.sha256(raw).hexdigest()
    args = {"data_dir": str(cache), "size": 1500, "sha256": sha, "seq_len": 10}
    task = Text8Task.with_keys(url=source.as_uri(), **args)
    task.setup()
    assert (cache / "text8").read_bytes() == raw and (cache / "text8.zip").is_file()
    source.unlink()  # the cache serves the next run
    again = Text8Task.with_keys(url=source.as_uri(), **args)
    again.setup()
    assert torch.equal(again.eval_set.codes, task.eval_set.codes)


def test_text8_without_file_or_network_says_where_to_put_it(tmp_path):
    task = Text8Task.with_keys(
        data_dir=str(tmp_path / "data"), url=(tmp_path / "none.zip").as_uri()
    )
    with pytest.raises(ConfigError) as err:
        task.setup()
    message = str(err.value)
    assert "\n" not in message
    assert f"put the unzipped text8 at {tmp_path / 'data' / 'text8'}" in message
    assert "task.path=" in message and not (tmp_path / "data" / "text8.zip").exists()
