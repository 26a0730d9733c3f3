"""The durable store: connection, migrations, runs and staging (SQLAlchemy Core; SQLite or PostgreSQL).

Staging is idempotent (docs/architecture.md §4): the newest version of a record wins by (source timestamp, arrival
order), a replayed record changes nothing, and a field the tap did not send stays unknown. Only a real
change of content moves a record's ``changed_seq``, which is how the merge finds what to look at.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from mktdyn_common.redact import protect_secrets

from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.store import schema as tables

#: Keys per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 500
#: PostgreSQL advisory lock key that serializes schema migrations (the write lock has its own, in lock.py).
MIGRATION_LOCK_KEY = 0x6D6B7464796E0001


class StoreError(MktdynError):
    """The store cannot be opened, migrated or written; the run must stop."""


def default_store_url() -> str:
    """``sqlite:///<MELTANO_PROJECT_ROOT or cwd>/.mktdyn/store.db`` (docs/architecture.md §9.5)."""
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT") or os.getcwd())
    return f"sqlite:///{root / '.mktdyn' / 'store.db'}"


class StoreConnection:
    """Owns the engine; every public method is one transaction (safe from the SDK's drain threads)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_store_url()
        try:
            sa_url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:  # its message quotes the URL, password and all: not repeated
            raise StoreError(
                "setting 'store_url': not a SQLAlchemy URL (dialect+driver://user:password@host/database)"
            ) from exc
        # The URL's password is a secret: masked in every log line and message, whoever prints the URL.
        protect_secrets([sa_url.password if isinstance(sa_url.password, str) else None])
        self.is_sqlite = sa_url.get_backend_name() == "sqlite"
        if self.is_sqlite and sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 60} if self.is_sqlite else {}
        try:
            self.engine = sa.create_engine(self.url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite)
        except (sa.exc.ArgumentError, ImportError) as exc:  # an unknown dialect or a missing driver
            raise StoreError(f"setting 'store_url': {self.safe_url}: {exc}") from exc
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._counter_lock = threading.Lock()
        self._selection: dict[str, frozenset[str]] | None = None  # stream → selected properties
        #: (started_at, read_from) per run id, read once (``RunLog._run_times``).
        self._run_time_cache: dict[str, tuple[str, str]] = {}
        self._batch = threading.local()  # the connection of this thread's open ``batched`` block, if any

    # -- lifecycle ------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to the latest version; refuse a store written by a newer release."""
        try:
            with self.engine.begin() as connection:
                self._serialize_migrations(connection)
                tables.schema_version.create(connection, checkfirst=True)
                current = connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar() or 0
                if current > tables.LATEST_VERSION:
                    raise StoreError(
                        f"the store at {self.safe_url} has schema version {current}, newer than this "
                        f"release understands ({tables.LATEST_VERSION}); upgrade target-mktdyn-merge"
                    )
                for version in range(current + 1, tables.LATEST_VERSION + 1):
                    tables.MIGRATIONS[version - 1](connection)
                    connection.execute(sa.insert(tables.schema_version).values(version=version, applied_at=now_iso()))
                return tables.LATEST_VERSION
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.__class__.__name__}: {exc}") from exc

    def _serialize_migrations(self, connection: sa.Connection) -> None:
        """Make two processes opening a fresh store at once migrate one after the other.

        Without this both see no table and both create it, and the slower one fails. PostgreSQL takes a
        transaction-scoped advisory lock (released at commit, or by the server if the process dies);
        SQLite takes its database write lock up front (``BEGIN IMMEDIATE``), waiting ``busy_timeout``.
        """
        if self.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))

    @property
    def safe_url(self) -> str:
        """The store URL with any password hidden (for messages and logs)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction; store errors surface as StoreError. Inside :meth:`batched` (same thread): that one."""
        joined = getattr(self._batch, "connection", None)
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store error ({self.safe_url}): {exc.__class__.__name__}: {exc}") from exc

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Make every :meth:`transaction` of this thread inside the block one transaction.

        The write-back records the outcome of each record of an API call (its outbox entry, pair, baseline,
        activity); one commit per record was a third of an initial sync. A call's outcomes are committed
        together instead. Nothing is lost by it: if the block fails or the process dies, every entry of the
        call is still ``sent`` (in doubt), which the next run resolves as it resolves any lost answer.
        """
        if getattr(self._batch, "connection", None) is not None:
            yield
            return
        with self.transaction() as connection:
            self._batch.connection = connection
            try:
                yield
            finally:
                self._batch.connection = None

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- counters -------------------------------------------------------------------------------
    def _next(self, connection: sa.Connection, name: str, count: int = 1) -> int:
        """Reserve ``count`` values of a counter; return the first.

        The increment is one atomic ``UPDATE value = value + count`` so that two processes staging at once
        never reserve the same numbers: the row stays locked until the transaction ends (PostgreSQL row
        lock; SQLite database write lock), and reading it back inside the transaction sees our own value.
        A read-then-write would let both read the same value. The row is created on first use; if another
        process creates it first, its insert wins and ours becomes an update.
        """
        table = tables.counters
        bump = sa.update(table).where(table.c.name == name).values(value=table.c.value + count)
        if connection.execute(bump).rowcount == 0:
            try:
                with connection.begin_nested():
                    connection.execute(sa.insert(table).values(name=name, value=count))
            except sa.exc.IntegrityError:
                connection.execute(bump)
        value = connection.execute(sa.select(table.c.value).where(table.c.name == name)).scalar_one()
        return int(value) - count + 1


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    deadline = time.monotonic() + 60
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Turning a fresh file to WAL needs it alone for an instant; when another run opens the same fresh
            # store at that instant SQLite answers "locked" at once, without waiting busy_timeout: try again.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
