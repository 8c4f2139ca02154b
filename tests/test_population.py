"""Population training: member k equals the solo run with its seed and settings; metrics.json
reports every member; bad population settings are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_cfg, read_metrics

from rnncap.base.errors import ConfigError
from rnncap.core import population as population_module
from rnncap.core.module import RNNCapModule
from rnncap.core.population import MEMBER_KEYS, OPTIONAL_MEMBER_KEYS, PopulationModule
from rnncap.core.population_data import member_losses
from rnncap.core.run import train

SEEDS, LRS, SAMPLES = [3, 7, 11], [0.01, 0.03, 0.004], [32, 20, 9]
MEMBERS = f"model.members={{seed:{SEEDS},lr:{LRS},samples:{SAMPLES}}}".replace(" ", "")


@pytest.fixture
def record_losses(monkeypatch):
    """Per-step training losses: {"solo": [float, ...], "population": [[K floats], ...]}."""
    seen: dict[str, list] = {"solo": [], "population": []}
    solo_step, population_step = RNNCapModule.training_step, PopulationModule.training_step

    def solo(self, batch, idx):
        loss = solo_step(self, batch, idx)
        seen["solo"].append(float(loss.detach()))
        return loss

    def population(self, batch, idx):
        population_step(self, batch, idx)
        seen["population"].append(self.last_losses.tolist())

    monkeypatch.setattr(RNNCapModule, "training_step", solo)
    monkeypatch.setattr(PopulationModule, "training_step", population)
    return seen


@pytest.mark.parametrize(
    "overrides",
    [
        ["cell=rnn"],  # solo: fused kernel; population: vmapped step loop
        ["cell=gru", "trainer.gradient_clip_val=0.05"],  # clipping per member
        ["cell=lstm", "optimizer=sgd", "scheduler.gamma=0.97"],
        # RMSprop's default eps=1e-8 turns gradients near 1e-8 into near-sign steps, which
        # amplify float32 rounding differences (vmap vs solo order of sums) past 1e-5
        ["cell=intersection", "depth=2", "optimizer=rmsprop", "+optimizer.eps=1e-4"],
        # cells whose parameters are not the packed blocks: U_z, a vector u, no weight_hh
        ["cell=minimalrnn", "depth=2", "cell.recurrent_init=chain"],
        ["cell=indrnn"],
        ["cell=mingru", "depth=2"],
        ["cell=minlstm"],
        # complex states: the uRNN's FFT and reflections (SGD: Adam's first near-sign steps
        # take the lr=0.03 member's float32 rounding differences past 1e-5, as with RMSprop),
        # the LRU block's scan, layer norm and GLU
        ["cell=urnn", "optimizer=sgd"],
        ["cell=lru", "depth=2"],
        # minibatches of 8 from each member's own b_k samples, in its solo run's order
        ["cell=gru", "task.batch_size=8"],
    ],
    ids=[
        "rnn",
        "gru-clip",
        "lstm-sgd-decay",
        "intersection",
        "minimalrnn",
        "indrnn",
        "mingru",
        "minlstm",
        "urnn",
        "lru",
        "capacity-minibatch",
    ],
)
def test_member_equals_solo_run_over_20_steps(make_cfg, tmp_path, record_losses, overrides):
    cfg = make_cfg(*overrides, "model.hidden=6", "model.population=3", MEMBERS)
    train(cfg)
    population = read_metrics(cfg)
    steps = torch.tensor(record_losses["population"])
    assert steps.shape == (20, 3)
    for k, (seed, lr, samples) in enumerate(zip(SEEDS, LRS, SAMPLES, strict=True)):
        record_losses["solo"].clear()
        solo_cfg = make_cfg(*overrides, "model.hidden=6", f"seed={seed}", f"optimizer.lr={lr}")
        solo_cfg.task.samples, solo_cfg.output_dir = samples, str(tmp_path / f"solo{k}")
        train(solo_cfg)
        torch.testing.assert_close(
            steps[:, k], torch.tensor(record_losses["solo"]), rtol=0, atol=1e-5
        )
        solo, member = read_metrics(solo_cfg), population["members"][k]
        assert member["seed"] == seed and member["lr"] == lr and member["samples"] == samples
        assert member["accuracy"] == solo["accuracy"]
        assert member["loss"] == pytest.approx(solo["loss"], abs=1e-5)
        # the training loss at the first and at the last step, as trainability reads them
        first, final = record_losses["solo"][0], record_losses["solo"][-1]
        assert (solo["first_loss"], solo["final_loss"]) == (first, final)
        for key in ("first_loss", "final_loss"):
            assert member[key] == pytest.approx(solo[key], abs=1e-5)


def listed(values: list) -> str:
    return "[" + ",".join("null" if v is None else str(v) for v in values) + "]"


def members_override(members: dict[str, list]) -> str:
    """model.members={name:[..],...} as a command-line override."""
    return "model.members={" + ",".join(f"{n}:{listed(v)}" for n, v in members.items()) + "}"


def solo_overrides(members: dict[str, list], k: int) -> list[str]:
    """Member k's settings as the solo run's own keys (MEMBER_KEYS)."""
    value = {n: "null" if v[k] is None else str(v[k]) for n, v in members.items()}
    own = [n for n in members if not (n in OPTIONAL_MEMBER_KEYS and members[n][k] is None)]
    return [f"{MEMBER_KEYS[n]}={value[n]}" for n in own]


STEPS = [20, 12, 7]  # members that stop early: frozen after their own step count
SETTINGS = {
    "gru-sgd": (
        ["cell=gru", "optimizer=sgd"],
        {
            "lr": [0.1, 0.05, 0.2],
            "momentum": [0.9, 0.0, 0.5],
            "weight_decay": [0.0, 1e-3, 1e-4],
            "gamma": [1.0, 0.97, 0.9],
            "clip": [0.05, None, 1.0],
            "gate_bias": [1.0, -0.5, 2.0],
            "max_steps": STEPS,
        },
    ),
    "lstm-rmsprop": (
        ["cell=lstm", "optimizer=rmsprop", "+optimizer.eps=1e-4"],  # eps: see above
        {
            "lr": [0.001, 0.003, 0.01],
            "momentum": [0.0, 0.5, 0.9],
            "recurrent_scale": [1.0, 0.5, 2.0],
            "input_scale": [1.0, 3.0, 0.3],
            "bias_init": [0.0, 0.5, -0.5],
            "samples": [32, 20, 9],
            "max_steps": STEPS,
        },
    ),
    # categorical keys per member: each member's optimiser class (one torch optimiser per
    # class), nonlinearity (one vmap per cell structure) and recurrent init (its build)
    "rnn-categorical": (
        ["cell=rnn"],
        {
            "optimizer": ["adam", "sgd", "rmsprop"],
            "lr": [0.01, 0.1, 0.001],
            "momentum": [None, 0.5, 0.0],
            "nonlinearity": ["tanh", "relu", "tanh"],
            "recurrent_init": ["orthogonal", "identity", "xavier"],
            "clip": [None, 1.0, 0.5],
            "max_steps": STEPS,
        },
    ),
    # per-member minibatches from per-member b (one full batch), padded to the largest
    "gru-minibatches": (
        ["cell=gru"],
        {
            "samples": [32, 20, 9],
            "batch_size": [8, None, 4],
            "lr": [0.01, 0.03, 0.02],
            "max_steps": STEPS,
        },
    ),
    "mingru-adam": (
        ["cell=mingru"],
        {
            "seed": [5, 6, 9],
            "weight_decay": [1e-4, 0.0, 1e-2],
            "gamma": [0.95, 1.0, 0.99],
            "clip": [None, 0.1, 0.01],
            "gate_bias": [0.0, 1.5, -1.0],
            "recurrent_scale": [0.3, 1.0, 1.5],
            "max_steps": [7, 20, 12],
        },
    ),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_every_member_setting_equals_its_solo_run(make_cfg, tmp_path, record_losses, case):
    """Per-member optimiser settings, decay, clipping, cell init keys and step counts: member
    k's losses while it trains, and its final metrics, are those of its solo run."""
    overrides, members = SETTINGS[case]
    cfg = make_cfg(*overrides, "model.hidden=6", "model.population=3", members_override(members))
    train(cfg)
    population = read_metrics(cfg)
    steps = torch.tensor(record_losses["population"])
    assert steps.shape == (20, 3)
    for k in range(3):
        record_losses["solo"].clear()
        seed = [] if "seed" in members else [f"seed={cfg.seed + k}"]
        solo_cfg = make_cfg(*overrides, "model.hidden=6", *seed, *solo_overrides(members, k))
        solo_cfg.output_dir = str(tmp_path / f"solo{k}")
        train(solo_cfg)
        n = members["max_steps"][k]
        assert len(record_losses["solo"]) == n
        torch.testing.assert_close(
            steps[:n, k], torch.tensor(record_losses["solo"]), rtol=0, atol=1e-5
        )
        if n < 20 and members.get("batch_size", [None] * 3)[k] is None:
            # frozen after its own steps: the same weights see the same full batch
            assert torch.all(steps[n:, k] == steps[n, k])
        solo, member = read_metrics(solo_cfg), population["members"][k]
        for name, values in members.items():
            assert member[name] == values[k], name
        assert member["status"] == "ok"
        assert member["accuracy"] == solo["accuracy"]
        assert member["loss"] == pytest.approx(solo["loss"], abs=1e-5)
        # the training loss at its first step and at its own last one (step n)
        assert member["first_loss"] == pytest.approx(record_losses["solo"][0], abs=1e-5)
        assert member["final_loss"] == pytest.approx(record_losses["solo"][-1], abs=1e-5)


SHARED_TASKS = {
    "parentheses": [
        "task=parentheses",
        "task.streams=2",
        "task.noise_symbols=2",
        "task.steps=6",
        "task.samples=40",
        "task.eval_samples=24",
        "task.batch_size=16",  # minibatches: every member sees its solo run's batch order
        "task.seed=4",
    ],
    "arithmetic": ["task=arithmetic", "task.samples=40", "task.eval_samples=16", "task.seed=4"],
}
SHARED = {"seed": [5, 6, 9], "lr": [0.01, 0.03, 0.003], "clip": [None, 0.1, 1.0]}


@pytest.mark.parametrize("task", list(SHARED_TASKS))
def test_shared_data_member_equals_solo_run(tmp_path, record_losses, monkeypatch, task):
    """Every task but capacity: the members share the population's data and batch order, so
    member k is the solo run seed=s_k task.seed=<the population's>, step by step, and the
    objective reported to its trial is the solo run's task objective on the evaluation set."""
    reporter = PruneMemberOne()
    monkeypatch.setattr(population_module, "build_reporter", lambda cfg, members: reporter)
    base = [
        *SHARED_TASKS[task],
        "cell=gru",
        "model.hidden=6",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        "trainer.checkpoint_every=null",
    ]
    cfg = compose_cfg([*base, "model.population=3", members_override(SHARED)], tmp_path / "pop")
    train(cfg)
    rows = read_metrics(cfg)["members"]
    steps = torch.tensor(record_losses["population"])
    assert steps.shape == (20, 3)
    assert [r["status"] for r in rows] == ["ok", "pruned", "ok"]
    for k in range(3):
        record_losses["solo"].clear()
        n = 10 if k == 1 else 20
        solo_cfg = compose_cfg(
            [*base, *solo_overrides(SHARED, k), f"trainer.max_steps={n}"], tmp_path / f"s{k}"
        )
        train(solo_cfg)
        torch.testing.assert_close(
            steps[:n, k], torch.tensor(record_losses["solo"]), rtol=0, atol=1e-5
        )
        solo = read_metrics(solo_cfg)
        assert rows[k]["accuracy"] == pytest.approx(solo["accuracy"], abs=1e-6)
        assert rows[k]["loss"] == pytest.approx(solo["loss"], abs=1e-5)
        reported = reporter.calls[0 if k == 1 else 1][1][k]
        assert reported == pytest.approx(solo["loss"], abs=1e-5)  # the task objective


class PruneMemberOne:
    """A stand-in for the tuner's TrialReporter: prunes member 1 at the first evaluation."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list]] = []

    def report(self, step: int, values: list) -> list[bool]:
        self.calls.append((step, list(values)))
        return [k == 1 and len(self.calls) == 1 for k in range(len(values))]


def test_pruned_member_is_frozen_and_others_train_on(
    make_cfg, tmp_path, record_losses, monkeypatch
):
    reporter = PruneMemberOne()
    monkeypatch.setattr(population_module, "build_reporter", lambda cfg, members: reporter)
    cfg = make_cfg("cell=gru", "model.hidden=6", "model.population=3", MEMBERS)
    train(cfg)
    rows = read_metrics(cfg)["members"]
    steps = torch.tensor(record_losses["population"])
    assert [step for step, _ in reporter.calls] == [10, 20]
    assert all(v is not None for v in reporter.calls[0][1])
    assert reporter.calls[1][1][1] is None  # pruned: not running, nothing reported
    assert torch.all(steps[10:, 1] == steps[10, 1])  # frozen from step 10 on
    assert [r["status"] for r in rows] == ["ok", "pruned", "ok"]
    for k, (seed, lr, samples) in enumerate(zip(SEEDS, LRS, SAMPLES, strict=True)):
        record_losses["solo"].clear()
        n = 10 if k == 1 else 20
        solo = [f"seed={seed}", f"optimizer.lr={lr}", f"task.samples={samples}"]
        solo_cfg = make_cfg("cell=gru", "model.hidden=6", *solo, f"trainer.max_steps={n}")
        solo_cfg.output_dir = str(tmp_path / f"solo{k}")
        train(solo_cfg)
        torch.testing.assert_close(
            steps[:n, k], torch.tensor(record_losses["solo"]), rtol=0, atol=1e-5
        )
        solo = read_metrics(solo_cfg)
        assert rows[k]["accuracy"] == solo["accuracy"]
        # the reported objective is the task's own bits of the member at that step
        reported = reporter.calls[0 if k == 1 else 1][1][k]
        assert reported == pytest.approx(solo["bits"], abs=1e-9)
        assert rows[k]["bits"] == pytest.approx(solo["bits"], abs=1e-9)


def test_metrics_json_keeps_contract_for_best_member(make_cfg):
    cfg = make_cfg("model.hidden=6", "model.population=3", MEMBERS)
    objective = train(cfg)
    m = read_metrics(cfg)
    assert m["population"] == 3 and len(m["members"]) == 3
    best = max(m["members"], key=lambda r: r["bits"])
    for key in ("seed", "status", "samples", "accuracy", "bits", "bits_per_param", "lr"):
        assert m[key] == best[key]
    assert objective == best["bits"]
    assert {"cell", "depth", "hidden", "input_dim", "params"} <= m.keys()
    for row in m["members"]:
        assert row["bits_per_param"] == pytest.approx(row["bits"] / m["params"])


def test_diverged_member_is_recorded_and_others_train_on(make_cfg, tmp_path):
    bad = "model.members={lr:[0.05,1e30]}"
    cfg = make_cfg("cell=irnn", "optimizer=sgd", "model.hidden=8", "model.population=2", bad)
    train(cfg)
    ok, diverged = read_metrics(cfg)["members"]
    assert diverged["status"] == "diverged" and diverged["bits"] is None
    # a non-finite last training loss is null (above any start for loss_above_start)
    assert diverged["final_loss"] is None and diverged["first_loss"] > 0
    solo_cfg = make_cfg("cell=irnn", "optimizer=sgd", "model.hidden=8", "optimizer.lr=0.05")
    solo_cfg.output_dir = str(tmp_path / "solo")
    train(solo_cfg)
    solo = read_metrics(solo_cfg)
    assert ok["status"] == "ok" and ok["accuracy"] == solo["accuracy"]
    assert ok["loss"] == pytest.approx(solo["loss"], abs=1e-5)


def test_population_checkpoint_resumes(make_cfg, caplog):
    cfg = make_cfg("model.hidden=4", "model.population=2", "trainer.checkpoint_every=10")
    train(cfg)
    first = read_metrics(cfg)
    with caplog.at_level("INFO"):
        train(cfg)
    assert "resuming from checkpoint" in caplog.text
    assert read_metrics(cfg) == first
    assert first["members"][1]["first_loss"] > first["members"][1]["final_loss"] > 0


def test_masked_member_loss_by_hand():
    """Member 0: logits 0 on 2 samples -> ln 2; member 1: 1 real sample, logit 2, label 1."""
    outputs = torch.tensor([[0.0, 0.0], [2.0, -50.0]]).view(2, 2, 1, 1)
    labels, mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    expected = torch.tensor(
        [torch.log(torch.tensor(2.0)), torch.log1p(torch.exp(-torch.tensor(2.0)))]
    )
    torch.testing.assert_close(member_losses(outputs, labels, mask), expected)


BAD = [
    (["model.population=0"], "model.population=0 is out of range: must be >= 1"),
    (["model.population=2", "model.members={lr:[0.1]}"], "model.members.lr must be a list of"),
    (["model.population=2", "model.members={rate:[1,2]}"], "model.members has unknown keys"),
    (["model.population=2", "model.members={lr:[0.1,-1]}"], "optimizer.lr=-1 is out of range"),
    (["model.population=2", "model.members={samples:[8,100]}"], "task.samples=100 exceeds"),
    (["model.population=2", "task.batch_size=40"], "task.batch_size=40 exceeds task.samples=32"),
    (
        ["model.population=2", "task.batch_size=16", "model.members={samples:[32,12]}"],
        "population member 1: task.batch_size=16 exceeds task.samples=12",
    ),
    (["model.population=2", "model.members={gamma:[0.9]}"], "model.members.gamma must be a list"),
    (
        ["model.population=2", "model.members={momentum:[0.5,0.9]}"],
        "model.members.momentum sets optimizer.momentum, which optimizer=adam does not have",
    ),
    (["model.population=2", "model.members={max_steps:[10,0]}"], "trainer.max_steps=0 is out of"),
    (["model.population=2", "model.members={clip:[1.0,-1]}"], "gradient_clip_val=-1"),
    (
        ["model.population=2", "model.members={optimizer:[adam,lbfgs]}"],
        "model.members.optimizer has ['lbfgs']; choose from ['adam', 'sgd', 'rmsprop']",
    ),
    (
        ["model.population=2", "model.members={optimizer:[sgd,adam],momentum:[0.5,0.9]}"],
        "model.members.momentum sets optimizer.momentum, which optimizer=adam does not have",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(c[0]) for c in BAD])
def test_bad_population_settings_are_one_clear_error(make_cfg, overrides, message):
    cfg = make_cfg("model.hidden=4", *overrides)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()
