"""A storage password stays in the sweeper's memory: jobs get the password-free URL.

A password belongs in ``~/.pgpass`` or ``PGPASSWORD``, where libpq finds it in the sweeper and
in every job alike. When ``hydra.sweeper.storage`` carries one anyway, the sweeper

- hands it to its jobs through ``PGPASSWORD`` in its own environment, which the jobs (in
  this process or in the launcher's worker processes) inherit and libpq reads;
- removes it from the config that every job's config is composed from (Hydra's record of the
  command line, ``hydra.overrides.hydra``, and ``hydra.sweeper.storage``), so no
  ``.hydra/*.yaml``, logger hyperparameters (CSV, W&B) or ``metrics.json`` holds it;
- removes it from ``sys.argv``, which W&B records as the run's command line.
"""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, open_dict, read_write

from rnncap.base.errors import ConfigError
from rnncap.core.storage import PASSWORD_ENV, database_url, masked, without_password

KEY = "hydra.sweeper.storage"


def keep_password_out(storage: str | None, config: DictConfig) -> str | None:
    """Take the password out of ``config`` and ``sys.argv`` and put it in this process's
    ``PGPASSWORD`` for the jobs; returns the storage the jobs open (``storage`` when it
    carries no password)."""
    public, password = without_password(storage)
    if password is None:
        return storage
    url = database_url(storage)
    if url is not None and url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"{KEY}={masked(storage)}: a password in the URL reaches the jobs only on "
            f"PostgreSQL ({PASSWORD_ENV}); give the URL without it and the password where the "
            "database driver reads it"
        )
    os.environ[PASSWORD_ENV] = password
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweeper.storage = public
        recorded = [str(o) for o in config.hydra.overrides.hydra]
        replaced = [o.replace(storage, public) for o in recorded]
        if replaced == recorded:  # given in a config file: record the public URL on top
            replaced.append(f"{KEY}='{public}'")
        config.hydra.overrides.hydra = replaced
    sys.argv[:] = [arg.replace(storage, public) for arg in sys.argv]
    return public
