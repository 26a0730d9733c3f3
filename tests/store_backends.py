"""The store backends the target's tests run against: a SQLite file, and a fresh PostgreSQL database.

PostgreSQL comes from ``MKTDYN_TEST_POSTGRES_URL`` (a server URL whose user may create databases;
``.ci/run`` starts one and sets it). Without it a developer's run skips the PostgreSQL variants and says
so; CI (``CI=true``) fails instead, so the PostgreSQL coverage cannot quietly disappear.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_URL_ENV = "MKTDYN_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must test the PostgreSQL store: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL store not tested: {reason}")


@contextmanager
def fresh_store_url(backend: str, directory: Path) -> Iterator[str]:
    """A store URL nobody has used yet: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'store.db'}"
        return
    server = os.environ.get(POSTGRES_URL_ENV, "")
    if not server:
        _unavailable(f"set {POSTGRES_URL_ENV} (e.g. postgresql+psycopg://postgres:pass@127.0.0.1:5432/postgres)")
    name = f"mktdyn_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable(f"cannot create a database on {POSTGRES_URL_ENV}: {str(exc).splitlines()[0]}")
    try:
        yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # FORCE: a store left open by a killed target process must not keep the database alive.
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
