"""Where a study lives (``hydra.sweeper.storage``), and who may share it.

- ``sqlite:///FILE``: one process. A relative path is taken from the launch directory.
- ``journal:///FILE``: Optuna's journal file (``JournalStorage`` + ``JournalFileBackend``),
  appended under a file lock: several processes on one machine (or on one shared file system
  with working locks). A relative path is taken from the launch directory.
- ``postgresql+psycopg://USER@HOST[:PORT]/DB`` (any SQLAlchemy URL but SQLite): many
  machines. Workers beat heartbeats for their running trials (``heartbeat_interval``); a
  trial silent for ``grace_period`` s is failed by the next worker that asks, and its
  settings are enqueued again (``RetryFailedTrialCallback``).

The password of a PostgreSQL server comes from where libpq looks for it (psycopg reads them
itself): ``PGPASSWORD``, the password file (``PGPASSFILE``, default ``~/.pgpass``) or the
service file of ``PGSERVICE``. A URL that carries a password still works, with a warning
that says where the password should live; ``masked`` is the URL as it may be shown and
``without_password`` the URL a job may be given (the sweeper hands the password to its jobs
through ``PGPASSWORD``, ``hydra_plugins.rnncap_optuna._credentials``).

A malformed or unreachable storage, or a server that asks for a password none of those
places holds, is a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from rnncap.base.errors import ConfigError

SQLITE, JOURNAL = "sqlite:///", "journal:///"
RETRIES = 3  # a killed trial's settings are asked again at most this many times
# what a worker sees when another creates Optuna's tables at the same moment: retried
SCHEMA_RACES = ("IntegrityError", "UniqueViolation", "DuplicateTable", "already exists")
ATTEMPTS = 5
HINT = "give sqlite:///FILE, journal:///FILE or postgresql+psycopg://USER@HOST:PORT/DB"
PASSWORD_ENV = "PGPASSWORD"  # libpq's variable: what a job's connection reads the password from
NO_PASSWORD = "no password supplied"  # libpq's words when a server asks and none was found
log = logging.getLogger(__name__)


def database_url(storage: str | None) -> URL | None:
    """The parsed URL of a database storage; None for none, a file storage or text that is not
    a URL (``open_storage`` says what is wrong with it)."""
    if storage is None or storage.startswith((SQLITE, JOURNAL)):
        return None
    try:
        return make_url(storage)
    except (SQLAlchemyError, ValueError):
        return None


def masked(storage: str | None) -> str | None:
    """The storage as it may be shown: a password replaced by ``***``."""
    url = database_url(storage)
    if url is not None:
        return storage if url.password is None else url.render_as_string(hide_password=True)
    if storage is None:
        return None
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", storage)  # a malformed URL's too


def without_password(storage: str | None) -> tuple[str | None, str | None]:
    """(the storage without its password, the password; None when it carries none)."""
    url = database_url(storage)
    if url is None or url.password is None:
        return storage, None
    password = str(url.password)
    return url._replace(password=None).render_as_string(hide_password=False), password


def password_warning(storage: str) -> str:
    """The one line that says where a URL's password should live instead."""
    public, _ = without_password(storage)
    return (
        f"hydra.sweeper.storage={masked(storage)} carries a password: rnncap writes it nowhere, "
        "but shell history and the process list show it; put it in ~/.pgpass or PGPASSWORD "
        f"and give {public}"
    )


def password_sources(url: URL) -> str:
    """Where libpq looked for the password of ``url``, with what it found there."""
    passfile = os.environ.get("PGPASSFILE", "~/.pgpass")
    path = Path(passfile).expanduser()
    if not path.is_file():
        pgpass = f"{passfile} (no such file)"
    else:
        pgpass = f"{passfile} (no line for {url.host}:{url.port or 5432}:{url.database}:"
        pgpass += f"{url.username}, or a mode other than 0600)"
    service = os.environ.get("PGSERVICE")
    service = f"PGSERVICE={service} (no password)" if service else "PGSERVICE (unset)"
    return f"the URL (none), {PASSWORD_ENV} (unset), {pgpass}, {service}"


def local_path(storage: str, prefix: str, cwd: str) -> Path:
    """The file of a sqlite or journal URL, anchored at the launch directory; folder created."""
    path = Path(storage[len(prefix) :])
    path = path if path.is_absolute() else Path(cwd) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def storage_url(storage: str | None, cwd: str) -> str | None:
    """A relative sqlite path is taken from the launch directory; its folder is created."""
    if storage is None or not storage.startswith(SQLITE):
        return storage
    return SQLITE + str(local_path(storage, SQLITE, cwd))


def absolute_storage(storage: str | None, cwd: str) -> str | None:
    """The URL with a relative sqlite or journal file anchored at ``cwd``: what a job started
    elsewhere (another working directory, another process) opens to reach the same study."""
    if storage is not None and storage.startswith(JOURNAL):
        return JOURNAL + str(local_path(storage, JOURNAL, cwd))
    return storage_url(storage, cwd)


def shared(storage: str | None) -> bool:
    """Whether other workers may be running trials of the same study right now."""
    return storage is not None and not storage.startswith(SQLITE)


def open_storage(
    storage: str | None,
    cwd: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> str | optuna.storages.BaseStorage | None:
    """The storage Optuna opens for ``hydra.sweeper.storage`` (module docstring); a server's
    storage beats heartbeats only when given ``heartbeat_interval`` (the sweeper does)."""
    if storage is None or storage.startswith(SQLITE):
        return storage_url(storage, cwd)
    if storage.startswith(JOURNAL):
        backend = optuna.storages.journal.JournalFileBackend(str(local_path(storage, JOURNAL, cwd)))
        return optuna.storages.JournalStorage(backend)
    try:
        url = make_url(storage)
    except (SQLAlchemyError, ValueError) as err:
        shown = masked(storage)
        raise ConfigError(f"hydra.sweeper.storage={shown!r} is not a URL ({err}); {HINT}") from None
    if url.password is not None:
        log.warning(password_warning(storage))
    return open_rdb(url, heartbeat_interval, grace_period)


def retry_failed() -> Any:
    """Optuna's callback that enqueues a failed trial's settings again (at most ``RETRIES``
    times), recording ``failed_trial`` in the new trial's system attributes."""
    # Optuna 4.9 renamed the retry callback; 4.0 to 4.8 have only the old name
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    return (retry or optuna.storages.RetryFailedTrialCallback)(RETRIES)


def open_rdb(
    url, heartbeat_interval: int | None, grace_period: int | None
) -> optuna.storages.RDBStorage:
    """A database server's storage with heartbeats. Workers that start together on a fresh
    database race to create Optuna's tables (a duplicate table or key): such an attempt is
    retried, up to ``ATTEMPTS`` in all, once the winner's tables exist."""
    shown = url.render_as_string(hide_password=True)
    connect = {"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {}
    for attempt in range(ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url.render_as_string(hide_password=False),
                    engine_kwargs={"connect_args": connect, "pool_pre_ping": True},
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry_failed() if heartbeat_interval else None,
                )
        except (SQLAlchemyError, ImportError, ValueError) as err:
            cause = getattr(err, "orig", None) or err  # the driver's own message
            reason = " ".join(str(cause).split()) or type(err).__name__
            race = any(sign in type(err).__name__ + reason for sign in SCHEMA_RACES)
            if NO_PASSWORD in reason:
                raise ConfigError(
                    f"hydra.sweeper.storage={shown!r}: the server asks for a password and none "
                    f"was found; looked in {password_sources(url)}; put it in ~/.pgpass "
                    f"(HOST:PORT:DB:USER:PASSWORD, mode 0600) or {PASSWORD_ENV}"
                ) from None
            if attempt == ATTEMPTS - 1 or not race:
                raise ConfigError(
                    f"hydra.sweeper.storage={shown!r} cannot be opened ({reason}); {HINT} "
                    "of a running server"
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
