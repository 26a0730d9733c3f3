"""The store (SQLAlchemy Core; SQLite or PostgreSQL): its connection, runs and staged records in one object."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import StoreError, default_store_url
from target_mktdyn_merge.store.staging import Staging


class Store(Staging):
    """The durable store: one connection pool, migrations, the run log and staged records."""


def open_existing(url: str | None = None) -> Store:
    """Open a store that exists and is at this release's schema, without creating or migrating anything.

    For the ``mktdyn`` commands (and ``check``): a mistyped URL must not leave an empty store behind, and an
    operator's command must not upgrade a production store under an older scheduled job. The store is
    probed read-only first (SQLite: ``mode=ro``, so not even the WAL switch touches a file that is not a
    store); only a store at exactly :data:`~store_schema.LATEST_VERSION` is opened. Every refusal is one line
    naming the URL (password hidden) and what to do: an older schema names ``mktdyn db upgrade``.
    """
    url = url or default_store_url()
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"setting 'store_url': {exc}") from exc
    safe = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or parsed.database == ":memory:" or not path.is_file():
            raise StoreError(
                f"no store at {safe}: the file does not exist (check --store-url / MKTDYN_STORE_URL; "
                "the first sync creates the store)"
            )
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        probe = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=sa.NullPool)
    else:
        try:
            probe = sa.create_engine(url, poolclass=sa.NullPool)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"setting 'store_url': {safe}: {exc}") from exc
    try:
        with probe.connect() as connection:
            if not sa.inspect(connection).has_table(tables.schema_version.name):
                raise StoreError(
                    f"{safe} holds no mktdyn store (no schema_version table; check --store-url / MKTDYN_STORE_URL)"
                )
            version = connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar() or 0
    except sa.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
        raise StoreError(f"cannot open the store at {safe}: {reason}") from exc
    finally:
        probe.dispose()
    if version < tables.LATEST_VERSION:
        raise StoreError(
            f"the store at {safe} has schema version {version}, older than this release's "
            f"{tables.LATEST_VERSION}: upgrade it with `mktdyn db upgrade` (same --store-url; stop scheduled "
            "runs first)"
        )
    if version > tables.LATEST_VERSION:
        raise StoreError(
            f"the store at {safe} has schema version {version}, newer than this release understands "
            f"({tables.LATEST_VERSION}); use the mktdyn release that wrote it, or a newer one"
        )
    return Store(url)
