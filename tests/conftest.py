"""Shared fixtures: the real Hydra config, composed once and shrunk for fast CPU tests."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from rnncap.core.resolvers import register_resolvers
from rnncap.core.schema import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# the options are discovered from conf/: a new cell or task is tested without editing tests
CELL_NAMES = sorted(p.stem for p in (CONF / "cell").glob("*.yaml"))
TASK_NAMES = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
register_resolvers()  # the tests compose configs as train.py does
register_configs()


# a tiny problem of every task in conf/task, for the smoke and determinism tests that run each
TINY_TASK = {
    "capacity": ["task.samples=32", "task.input_dim=6", "task.steps=3"],
    "memory": ["task.input_dim=6", "task.delay=2", "task.samples=64", "task.eval_samples=32"]
    + ["task.mc_samples=200", "task.mc_delays=3"],
    "rcf": ["task.samples=32", "task.input_dim=6", "task.steps=3"],
    "text8": ["task.size=null", "task.sha256=null", "task.seq_len=10", "task.eval_chars=500"],
    "parentheses": ["task.streams=2", "task.noise_symbols=1", "task.max_count=3"]
    + ["task.steps=8", "task.samples=64", "task.eval_samples=32"],
    "arithmetic": ["task.max_digits=2", "task.samples=64", "task.eval_samples=32"],
    "distance": ["task.symbols=3", "task.length=8", "task.delay=3", "task.samples=64"]
    + ["task.eval_samples=32"],
    "counting": ["task.train_length=8", "task.test_lengths=[16,40]", "task.samples=64"]
    + ["task.eval_samples=32", "task.test_samples=8"],
}


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_text(chars: int = 20_000, seed: int = 0) -> bytes:
    """A text8-like text (a-z and space) of about ``chars`` characters."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "zebra"]
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(chars // 2)).encode()[:chars]


def tiny_task(name: str, folder: Path) -> list[str]:
    """The overrides of a tiny ``task=<name>`` (its data file, if any, written into folder)."""
    assert name in TINY_TASK, (
        f"task={name}: add the overrides of a problem that trains in a second to TINY_TASK in "
        "tests/conftest.py (the smoke and determinism tests run every task in conf/task)"
    )
    overrides = [f"task={name}", *TINY_TASK[name]]
    if name == "text8":  # a local text instead of the 100 MB download
        text = folder / "tiny8"
        text.write_bytes(tiny_text(3000))
        overrides.append(f"task.path={text}")
    return overrides


def compose_cfg(overrides: list[str], output_dir: Path) -> DictConfig:
    """The training config as ``python train.py <overrides>`` composes it, run in output_dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


def cell_class(name: str) -> type:
    """The class that ``cell=<name>`` instantiates."""
    return get_class(compose_cfg([f"cell={name}"], Path(".")).cell._target_)


# every cell class once, in the order of the options that name it
CELL_CLASSES = list(dict.fromkeys(cell_class(name) for name in CELL_NAMES))


@pytest.fixture(scope="session")
def cell_configs(tmp_path_factory) -> Path:
    """Every cell's composed config, as ``rnncap generate cells`` writes them (the figures'
    labels, colours and order come from their ``display``)."""
    from rnncap.generate import write_cell_configs

    out = tmp_path_factory.mktemp("configs") / "cell"
    write_cell_configs(out, CONF)
    return out


def read_metrics(cfg: DictConfig) -> dict:
    """The metrics.json of the run composed as ``cfg``."""
    return json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


def without_wall(metrics: dict) -> dict:
    """metrics.json less the wall seconds of its convergence rows (the one timed value), for
    comparing two runs of the same computation."""
    rows = [{k: v for k, v in r.items() if k != "wall_s"} for r in metrics.get("convergence", [])]
    return {**metrics, "convergence": rows}


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) shrunk to a tiny problem, writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        tiny = [
            "task.samples=32",
            "task.input_dim=6",
            "task.steps=3",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.checkpoint_every=null",
        ]
        return compose_cfg([*tiny, *overrides], tmp_path)

    return make


# ----------------------------------------------------------------------------- PostgreSQL
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_ENV = "RNNCAP_TEST_POSTGRES"  # set by .ci/run: the server it started, postgresql://...


def start_postgres(root: Path) -> str:
    """A throwaway PostgreSQL 15 server on loopback, run as ``nobody`` when we are root
    (the server refuses root); returns its admin URL (trust auth, user postgres)."""
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root.mkdir(parents=True, exist_ok=True)
    user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if user:
        os.chown(root, 65534, 65534)
    data = root / "data"
    run = subprocess.run
    run([*user, PG_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], check=True,
        capture_output=True)  # fmt: skip
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    run([*user, PG_BIN / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "start"],
        check=True, capture_output=True)  # fmt: skip
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """The admin URL of a running PostgreSQL: $RNNCAP_TEST_POSTGRES, else one started here."""
    import os
    import subprocess

    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    url = os.environ.get(PG_ENV)
    root = None
    if not url:
        if not (PG_BIN / "pg_ctl").exists():
            pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} and no ${PG_ENV}")
        root = Path("/tmp") / f"rnncap-pg-{os.getpid()}"
        try:
            url = start_postgres(root)
        except subprocess.CalledProcessError as err:
            pytest.skip(f"could not start PostgreSQL: {err.stderr.decode()[-300:]}")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as err:
        pytest.skip(f"PostgreSQL at {url} is not reachable: {err}")
    yield url
    if root is not None:
        user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        subprocess.run([*user, PG_BIN / "pg_ctl", "-D", root / "data", "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        subprocess.run(["rm", "-rf", str(root)])


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh database on the server, as an Optuna storage URL (postgresql+psycopg://...)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"
