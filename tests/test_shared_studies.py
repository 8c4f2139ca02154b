"""Shared studies: several sweep workers on one study in PostgreSQL (or a journal file), a
worker killed mid-trial, the reports reading the shared study, and bad storage input.

The PostgreSQL tests use ``postgres_db`` (conftest.py): a fresh database on a real server on
loopback, the one .ci/run started or one started here; they skip where no server binary exists.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from conftest import ROOT
from omegaconf import OmegaConf
from optuna.trial import TrialState
from test_sweeper import TINY

from rnncap.base.errors import ConfigError
from rnncap.core.storage import masked, open_storage, shared, without_password

STUDY = "capacity-rnn-d1-n4-random"  # the default name of sweep=random cell=rnn on TINY
pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
]


def retried_number(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the failed trial whose settings this trial asked again (None: a new one)."""
    return trial.system_attrs.get("failed_trial")


def worker(cwd: Path, storage: str, n_trials: int, name: str, *extra: str) -> subprocess.Popen:
    """One sweep worker: the same command as every other worker, its own sweep dir."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=random", *TINY, *extra]
    cmd += [f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}"]
    cmd += [f"hydra.sweep.dir={name}"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    log = open(cwd / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen], cwd: Path, first: int = 0) -> None:
    for i, proc in enumerate(procs, start=first):
        rc = proc.wait(timeout=300)
        assert rc == 0, (cwd / f"w{i}.log").read_text()[-2000:]


def check_finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials, each with its run dir, its metrics.json and metrics attributes."""
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no duplicate trial numbers
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in done:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert t.user_attrs["metrics.bits"] == metrics["bits"]
        assert t.user_attrs["metrics.params"] == metrics["params"] and t.user_attrs["status"]
    return done


@pytest.mark.slow  # 3 processes x 4 trials: 60 to 120 s on 2 busy cores
def test_three_workers_share_one_postgres_study_and_the_reports_read_it(tmp_path, postgres_db):
    workers = [worker(tmp_path, postgres_db, 12, f"w{i}") for i in range(3)]
    wait_all(workers, tmp_path)
    study = optuna.load_study(study_name=STUDY, storage=postgres_db)
    done = check_finished(study)
    # each worker asks only what is missing when it asks: at most one extra trial per other worker
    assert 12 <= len(done) <= 14
    assert not [t for t in study.get_trials() if t.state != TrialState.COMPLETE]  # none lost
    assert len({Path(t.user_attrs["run_dir"]) for t in done}) == len(done)

    rnncap = [sys.executable, "-m", "rnncap.cli"]
    report = [*rnncap, "trainability", "--storage", postgres_db, "--out", "tr"]
    report += ["--curve-sampler", "RandomSampler", "--depths", "1", "--wandb", "disabled"]
    out = subprocess.run(report, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    curves = (tmp_path / "tr" / "curves.csv").read_text().splitlines()
    assert len(curves) == 1 + len(done)  # one row per finished trial
    (tmp_path / "runs").mkdir()
    fit = [*rnncap, "fit", "--runs", "runs", "--out", "cap", "--metrics", "cap.json"]
    fit += ["--boot", "10", "--studies", postgres_db, "--wandb", "disabled"]
    out = subprocess.run(fit, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"read {len(done)} runs" in out.stdout


def running_trial_dir(sweep_dir: Path) -> Path | None:
    """A job dir of this worker that has no metrics.json yet: the worker is mid-trial."""
    if not sweep_dir.is_dir():
        return None
    started = [d for d in sweep_dir.iterdir() if d.name.isdigit()]
    return next((d for d in started if not (d / "metrics.json").exists()), None)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_a_failed_trial_that_is_asked_again(tmp_path, postgres_db):
    beat = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    victim = worker(tmp_path, postgres_db, 8, "w0", *beat)
    deadline = time.monotonic() + 120
    while (job := running_trial_dir(tmp_path / "w0")) is None:
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    others = [worker(tmp_path, postgres_db, 8, f"w{i}", *beat) for i in (1, 2)]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    for i, proc in enumerate(others, start=1):
        assert proc.wait(timeout=300) == 0, (tmp_path / f"w{i}.log").read_text()[-2000:]

    study = optuna.load_study(study_name=STUDY, storage=postgres_db)
    killed = study.trials[int(job.name)]
    assert killed.state == TrialState.FAIL  # not lost, not counted as finished
    done = check_finished(study)
    assert 8 <= len(done) <= 9 and killed not in done
    retried = [t for t in done if retried_number(t) == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params  # asked again


@pytest.mark.slow  # 3 train.py processes, one after another: about a minute
def test_a_rerun_of_a_complete_study_fails_a_killed_workers_trial(tmp_path, postgres_db):
    beat = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    victim = worker(tmp_path, postgres_db, 3, "w0", *beat)
    deadline = time.monotonic() + 120
    while (job := running_trial_dir(tmp_path / "w0")) is None or job.name != "2":
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)  # mid-trial 2, after trials 0 and 1
    victim.wait()
    study = optuna.load_study(study_name=STUDY, storage=postgres_db)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    time.sleep(3.5)  # the grace period

    # the same sweep with n_trials=2: complete, nothing to ask; the dead trial is reaped
    wait_all([worker(tmp_path, postgres_db, 2, "w1", *beat)], tmp_path, first=1)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    killed = trials[2]
    assert killed.state == TrialState.FAIL
    (waiting,) = [t for t in trials if t.state == TrialState.WAITING]  # its settings, queued
    assert retried_number(waiting) == killed.number
    assert len(check_finished(study)) == 2  # nothing trained twice

    # a third trial wanted: the queued settings are asked first, and nothing is lost
    wait_all([worker(tmp_path, postgres_db, 3, "w2", *beat)], tmp_path, first=2)
    done = check_finished(study)
    assert [t.number for t in done] == [0, 1, waiting.number]
    assert done[-1].params == killed.params
    assert {t.state for t in study.get_trials()} == {TrialState.COMPLETE, TrialState.FAIL}


@pytest.mark.slow
def test_journal_file_is_shared_by_processes_of_one_machine(tmp_path):
    workers = [worker(tmp_path, "journal:///tune/studies.log", 4, f"w{i}") for i in range(2)]
    wait_all(workers, tmp_path)
    storage = open_storage("journal:///tune/studies.log", str(tmp_path), 10, 30)
    done = check_finished(optuna.load_study(study_name=STUDY, storage=storage))
    assert 4 <= len(done) <= 5 and (tmp_path / "tune" / "studies.log").is_file()


def test_a_stale_postgres_trial_is_failed_and_its_settings_asked_again(postgres_db):
    storage = open_storage(postgres_db, ".", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    lr = trial.suggest_float("optimizer.lr", 1e-4, 1.0, log=True)
    storage.record_heartbeat(trial._trial_id)  # then its worker dies: no more beats
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)  # what every worker runs before it asks
    assert study.trials[0].state == TrialState.FAIL
    again = study.ask()
    assert again.suggest_float("optimizer.lr", 1e-4, 1.0, log=True) == lr
    assert retried_number(study.trials[again.number]) == trial.number


def test_workers_opening_a_fresh_database_together_all_get_the_storage(postgres_db):
    """Workers started at once race to create Optuna's tables (a duplicate table or key):
    every one of them must open the storage, none may fail the sweep."""
    import threading

    start, opened, errors = threading.Barrier(6), [], []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(open_storage(postgres_db, ".", heartbeat_interval=60, grace_period=120))
        except Exception as err:  # noqa: BLE001  (collected and shown below)
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(opened) == 6
    optuna.create_study(study_name="s", storage=opened[0])
    assert [s.study_name for s in optuna.get_all_study_summaries(opened[-1])] == ["s"]


def test_which_storages_are_shared():
    assert not shared("sqlite:///results/tune/studies.db") and not shared(None)
    assert shared("journal:///x.log") and shared("postgresql+psycopg://u@h/db")


def bad_sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=random", *TINY, *overrides]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("not-a-url", "is not a URL"),
        ("postgresql+psycopg://u@127.0.0.1:notaport/db", "is not a URL"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/rnncap", "cannot be opened"),
    ],
)
def test_bad_storage_names_the_key_and_what_to_give(storage, says):
    with pytest.raises(ConfigError) as err:
        open_storage(storage, ".", 10, 30)
    line = str(err.value)
    assert line.startswith("hydra.sweeper.storage=") and says in line and "\n" not in line
    assert "postgresql+psycopg://USER@HOST:PORT/DB" in line  # what to give instead


def test_unreachable_storage_is_one_line_and_exit_2(tmp_path):
    out = bad_sweep(tmp_path, "hydra.sweeper.storage=postgresql+psycopg://postgres@127.0.0.1:1/x")
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: hydra.sweeper.storage=") and "cannot be opened" in line


def test_existing_study_with_another_direction_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    out = bad_sweep(tmp_path, f"hydra.sweeper.storage={storage}")
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: hydra.sweeper.direction=maximize") and STUDY in line


# ----------------------------------------------------------------------------- credentials
SECRET = "Sekr1t-pw-4731"  # the CI server trusts every connection: any password is accepted


def with_password(url: str, password: str = SECRET) -> str:
    """``url`` (postgresql+psycopg://USER@HOST:PORT/DB) with ``password`` in it."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def test_a_password_is_masked_where_shown_and_taken_out_for_jobs():
    url = "postgresql+psycopg://bar:p%40ss@127.0.0.1:5432/study"
    assert masked(url) == "postgresql+psycopg://bar:***@127.0.0.1:5432/study"
    public = "postgresql+psycopg://bar@127.0.0.1:5432/study"
    assert without_password(url) == (public, "p@ss")
    assert masked("postgresql+psycopg://u:pw@h:notaport/db") == (
        "postgresql+psycopg://u:***@h:notaport/db"  # not a URL SQLAlchemy parses: masked too
    )
    for plain in ("postgresql+psycopg://bar@h/db", "sqlite:///x.db", "journal:///x.log", None):
        assert masked(plain) == plain and without_password(plain) == (plain, None)
    with pytest.raises(ConfigError) as err:
        open_storage("postgresql+psycopg://u:pw@127.0.0.1:notaport/db", ".")
    assert "pw" not in str(err.value) and "u:***@" in str(err.value)


def test_the_sweeper_keeps_a_url_password_out_of_every_job_config(monkeypatch):
    from test_sweeper import hydra_cfg

    from hydra_plugins.rnncap_optuna._credentials import keep_password_out

    url = with_password("postgresql+psycopg://bar@127.0.0.1:5432/study")
    config = hydra_cfg("sweep=random", f"hydra.sweeper.storage={url}")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", f"hydra.sweeper.storage={url}"])
    public = keep_password_out(url, config)
    assert public == "postgresql+psycopg://bar@127.0.0.1:5432/study"
    assert os.environ["PGPASSWORD"] == SECRET  # what the jobs' libpq reads
    assert SECRET not in str(OmegaConf.to_yaml(config)) and SECRET not in " ".join(sys.argv)
    assert f"hydra.sweeper.storage={public}" in config.hydra.overrides.hydra
    assert config.hydra.sweeper.storage == public
    plain = hydra_cfg("sweep=random", f"hydra.sweeper.storage={public}")
    assert keep_password_out(public, plain) == public  # nothing to take out: left alone
    assert list(plain.hydra.overrides.hydra) == [f"hydra.sweeper.storage={public}"]
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.storage=mysql://u:\*\*\*@h/db: "):
        keep_password_out("mysql://u:pw@h/db", hydra_cfg("sweep=random"))


@contextmanager
def password_asking_server() -> Iterator[int]:
    """A loopback server that answers every PostgreSQL connection with a request for a
    password (what a server with password authentication does); yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                while len(head := conn.recv(8)) == 8:
                    length, code = struct.unpack("!ii", head)
                    if code in (80877103, 80877104):  # SSL or GSS encryption asked: no
                        conn.sendall(b"N")
                        continue
                    conn.recv(length - 8)  # the startup message
                    conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # a cleartext password, please
                    conn.recv(1024)
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_password_found_nowhere_is_one_line_naming_where_it_looked(tmp_path, monkeypatch):
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with password_asking_server() as port:
        url = f"postgresql+psycopg://bar@127.0.0.1:{port}/study"
        with pytest.raises(ConfigError) as err:
            open_storage(url, ".", 10, 30)
        out = bad_sweep(tmp_path, f"hydra.sweeper.storage={url}", "hydra.sweep.dir=sweep")
    line = str(err.value)
    assert line.startswith(f"hydra.sweeper.storage='{url}': the server asks for a password")
    for place in ("the URL", "PGPASSWORD", "~/.pgpass (no such file)", "PGSERVICE"):
        assert place in line
    assert out.returncode == 2, out.stderr[-2000:]
    (shown,) = out.stderr.strip().splitlines()
    assert shown == f"error: {line}"
    assert not (tmp_path / "sweep").exists()  # nothing launched


@pytest.mark.slow  # one sweep of 2 trials per logger: about 20 s each
@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_a_url_password_reaches_no_file_attribute_or_output_of_a_sweep(
    tmp_path, postgres_db, logger
):
    url = with_password(postgres_db)
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=random", *TINY, f"logger={logger}"]
    cmd += ["hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={url}", "hydra.sweep.dir=sweep"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # the one warning, with the password masked
    output = out.stdout + out.stderr
    (warning,) = [line for line in output.splitlines() if "carries a password" in line]
    assert "~/.pgpass or PGPASSWORD" in warning and ":***@" in warning

    files = [p for p in (tmp_path / "sweep").rglob("*") if p.is_file()]
    assert len(files) > 10 and any(p.name == "hparams.yaml" or "wandb" in p.parts for p in files)
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaks
    assert SECRET not in output

    study = optuna.load_study(study_name=STUDY, storage=postgres_db)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.intermediate_values for t in trials)  # every job reached the storage
    attrs: list = [study.user_attrs]
    attrs += [[t.user_attrs, t.system_attrs, t.params] for t in trials]
    assert SECRET not in json.dumps(attrs, default=str)

    if logger == "csv":  # the trainability report on the same URL: its output and files
        report = [sys.executable, "-m", "rnncap.cli", "trainability", "--storage", url]
        report += ["--out", "tr", "--curve-sampler", "RandomSampler", "--wandb", "disabled"]
        out = subprocess.run(report, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "storage postgresql+psycopg://postgres:***@" in out.stdout
        assert SECRET not in out.stdout + out.stderr
        written = [p for p in (tmp_path / "tr").rglob("*") if p.is_file()]
        assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
