"""Bad input: one clear line naming the key and what is allowed, a non-zero exit, and no
metrics.json that looks finished. The catalogue below is the
reference list of refused inputs (docs/scaling.md points here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CELL_NAMES, cell_class
from hydra.errors import ConfigCompositionException
from test_train import run_cli

from rnncap.base.errors import ConfigError
from rnncap.core.run import train
from rnncap.core.validate import compose_error

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")

# (kind of bad input, overrides, what the error says). Hydra refuses unknown group options and
# keys while composing (its message lists the options); rnncap.core.validate refuses values.
CATALOGUE = [
    ("unknown cell", ["cell=foo"], "Could not find 'cell/foo'"),
    ("unknown task", ["task=foo"], "Could not find 'task/foo'"),
    ("unknown optimizer", ["optimizer=adamw"], "Could not find 'optimizer/adamw'"),
    ("unknown hardware", ["hardware=tpu"], "Could not find 'hardware/tpu'"),
    ("misspelt key", ["cell.gate_bais=1"], "Could not override 'cell.gate_bais'"),
    ("depth 0", ["depth=0"], "depth=0 is out of range: must be >= 1"),
    ("depth not a number", ["depth=abc"], "depth='abc' must be an integer"),
    ("depth fractional", ["depth=1.5"], "depth=1.5 must be an integer"),
    ("negative seed", ["seed=-1"], "seed=-1 is out of range: must be >= 0"),
    ("zero width", ["model.hidden=0"], "model.hidden=0 is out of range"),
    ("width and budget", ["model.hidden=8", "model.budget=500"], "model.hidden=8 and model"),
    ("no width, no budget", ["model.budget=null"], "neither model.hidden nor model.budget"),
    ("budget below one unit", ["model.budget=3"], "model.budget=3 is too small"),
    ("zero learning rate", ["optimizer.lr=0"], "optimizer.lr=0 is out of range: must be > 0"),
    ("negative learning rate", ["optimizer.lr=-1e-3"], "optimizer.lr=-0.001 is out of range"),
    ("negative momentum", ["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum=-0.5"),
    ("negative L2", ["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 is out of range"),
    ("zero lr decay", ["scheduler.gamma=0"], "scheduler.gamma=0 is out of range: must be > 0"),
    ("gate bias not a number", ["cell.gate_bias=abc"], "cell.gate_bias='abc' must be a number"),
    ("no steps", ["trainer.max_steps=0"], "trainer.max_steps=0 is out of range"),
    (
        "zero eval interval",
        ["trainer.val_check_interval=0"],
        "trainer.val_check_interval=0 is out of range",
    ),
    ("zero checkpoint interval", ["trainer.checkpoint_every=0"], "trainer.checkpoint_every=0"),
    ("zero clip", ["trainer.gradient_clip_val=0"], "trainer.gradient_clip_val=0 is out of range"),
    ("no samples", ["task.samples=0"], "task.samples=0 is out of range"),
    ("zero batch", ["task.batch_size=0"], "task.batch_size=0 is out of range"),
    ("zero time steps", ["task.steps=0"], "task.steps=0 is out of range"),
    ("more samples than inputs", ["task.samples=100", "task.input_dim=4"], "exceeds the 2^4"),
    ("+RNN at depth 1", ["cell=intersection", "depth=1"], "cell=intersection needs depth >= 2"),
    ("unknown nonlinearity", ["cell.nonlinearity=sigmoid"], "cell.nonlinearity='sigmoid' is"),
    (
        "nonlinearity the cell lacks",
        ["cell=intersection", "depth=2", "cell.nonlinearity=relu"],
        "not allowed for cell=intersection",
    ),
    ("unknown recurrent init", ["cell.recurrent_init=random"], "cell.recurrent_init='random'"),
    (
        "chain init without recurrent weights",
        ["cell=mingru", "cell.recurrent_init=chain"],
        "cell.recurrent_init='chain' is not allowed for cell=mingru (it has no N x N recurrent "
        "blocks); choose one of orthogonal, identity, xavier",
    ),
    (
        "chain init on a recurrent vector",
        ["cell=indrnn", "cell.recurrent_init=chain"],
        "cell.recurrent_init='chain'; choose one of uniform, identity",
    ),
    (
        "modReLU on a cell without it",
        ["cell=lstm", "cell.nonlinearity=modrelu"],
        "cell.nonlinearity='modrelu' is not allowed for cell=lstm",
    ),
    (
        "orthogonal on a cell without it",
        ["cell=lstm", "cell.orthogonal=exp"],
        "cell.orthogonal='exp' is not allowed for cell=lstm",
    ),
    ("unknown orthogonal map", ["cell.orthogonal=householder"], "cell.orthogonal='householder'"),
    (
        "orthogonal in a population",
        ["cell.orthogonal=cayley", "model.population=2", "task.batch_size=null"],
        "cell.orthogonal=cayley with model.population=2",
    ),
    (
        "uRNN from a chosen matrix",
        ["cell=urnn", "cell.recurrent_init=identity"],
        "cell.recurrent_init='identity' is not allowed for cell=urnn",
    ),
    (
        "uRNN without modReLU",
        ["cell=urnn", "cell.nonlinearity=tanh"],
        "cell.nonlinearity='tanh' is not allowed for cell=urnn",
    ),
    (
        "LRU ring upside down",
        ["cell=lru", "cell.r_min=0.9", "cell.r_max=0.5"],
        "cell.r_min=0.9, cell.r_max=0.5: the LRU needs 0 <= r_min <= r_max <= 1",
    ),
    ("LRU phase zero", ["cell=lru", "cell.max_phase=0"], "cell.max_phase=0 is out of range"),
    ("unknown LRU block", ["cell=lru", "cell.block=mlp"], "cell.block='mlp'; choose one of"),
    ("LRU dropout of 1", ["cell=lru", "cell.dropout=1"], "cell.dropout=1 is out of range"),
    (
        "LRU dropout in a population",
        ["cell=lru", "cell.dropout=0.1", "model.population=2", "task.batch_size=null"],
        "cell.dropout=0.1 with model.population=2",
    ),
    ("unknown compile mode", ["cell.compile=fast"], "cell.compile='fast'; choose one of false"),
    pytest.param("gpu without CUDA", ["hardware=gpu"], "hardware=gpu but no CUDA", marks=no_cuda),
    pytest.param("ddp without CUDA", ["hardware=ddp"], "hardware=ddp but no CUDA", marks=no_cuda),
    ("unknown precision", ["hardware.precision=fp8"], "hardware.precision='fp8'; choose one of"),
    ("fp16 on CPU", ["hardware.precision=16-mixed"], "hardware.precision=16-mixed needs a GPU"),
    ("unknown strategy", ["hardware.strategy=fsdp"], "hardware.strategy='fsdp'; choose one of"),
    ("devices without DDP", ["hardware.devices=2"], "hardware.devices=2 needs hardware.strategy"),
    ("zero devices", ["hardware.devices=0"], "hardware.devices=0 is out of range"),
    ("unknown backend", ["hardware.backend=mpi"], "hardware.backend='mpi'; choose one of"),
    ("nccl on CPU", ["hardware=ddp_cpu", "hardware.backend=nccl"], "hardware.backend=nccl needs"),
    ("unknown determinism", ["hardware.deterministic=maybe"], "hardware.deterministic='maybe'"),
    ("zero threads", ["hardware.threads=0"], "hardware.threads=0 is out of range"),
    ("appended typo", ["+model.bugdet=200"], "model.bugdet is not a key of model: did you mean"),
    ("appended task typo", ["+task.sampels=9"], "did you mean task.samples?"),
    ("appended unknown key", ["+depht=2"], "depht is not a key of the run config: did you mean"),
]


def _id(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


@pytest.mark.parametrize(("kind", "overrides", "message"), CATALOGUE, ids=map(_id, CATALOGUE))
def test_bad_input_catalogue(make_cfg, tmp_path, kind, overrides, message):
    try:
        cfg = make_cfg(*overrides)
    except ConfigCompositionException as err:
        # a refused value: rnncap's one line; an unknown option or key: Hydra's first line
        line = compose_error(err) or str(err).splitlines()[0]
        assert message in line and "\n" not in line
        return
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (Path(cfg.output_dir) / "metrics.json").exists()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["cell=foo"], "Could not find 'cell/foo'", 1),
        (["cell.gate_bais=1"], "gate_bais", 1),
        (["cell=intersection", "depth=1"], "error: cell=intersection needs depth >= 2", 2),
        (["hardware.precision=fp8"], "error: hardware.precision='fp8'; choose one of", 2),
    ],
)
def test_command_line_refuses_bad_input(tmp_path, args, message, code):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")  # an earlier run's result
    proc = run_cli(*args, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == code
    assert message in proc.stderr
    if code == 2:  # rnncap's own errors: exactly one line, and no run folder left behind
        assert proc.stderr.strip().count("\n") == 0
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_cell_option_rule_is_stated_once_and_its_message_lists_what_the_cell_takes(name):
    """The values a refusal offers are exactly the ones the cell's constructor takes, for the
    config check and the constructor alike (one statement: ``RecurrentCell.check_options``)."""
    cls = cell_class(name)
    for key, accepts in [("nonlinearity", cls.allowed_nonlinearities), ("recurrent_init", None)]:
        with pytest.raises(ConfigError) as err:
            cls.check_options(name, **{key: "nonesuch"})
        message = str(err.value)
        assert message.startswith(f"cell.{key}='nonesuch' is not allowed for cell={name}")
        offered = message.split("choose one of ")[1].split(", ")
        assert accepts is None or offered == list(accepts)
        for value in offered:  # each offered value builds the cell
            cls(4, 4, **{key: value})
        with pytest.raises(ConfigError, match=f"for cell={cls.__name__}"):
            cls(4, 4, **{key: "nonesuch"})
    chain = "chain" in cls.recurrent_inits()
    assert chain == (cls.square_recurrent and "chain" in cls.allowed_recurrent_inits)
