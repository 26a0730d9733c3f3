"""What the store sends to its database, for tests that bound a query's cost by its plan (issue 18).

A lookup answered from a low-selectivity index or a table scan costs what the store holds, not what a batch
asks, and small test stores never show it. These helpers capture the statements a store actually runs and ask
SQLite how it would answer them; tests then name the index each must use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store

#: A captured statement and its parameters.
Statement = tuple[str, Any]


@contextmanager
def captured(store: Store, verb: str, table: str) -> Iterator[list[Statement]]:
    """The statements beginning with ``verb`` (SELECT, UPDATE, ...) on ``table`` run inside the block.

    For an executemany, every parameter set (a statement per set of parameters is what reached the database).
    """
    seen: list[Statement] = []
    pattern = f"FROM {table}" if verb.upper() == "SELECT" else f"{verb.upper()} {table.upper()}"

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        text = statement.lstrip()
        if not text.upper().startswith(verb.upper()):
            return
        if pattern not in (text if verb.upper() == "SELECT" else text.upper()):
            return
        seen.extend((statement, p) for p in (parameters if executemany else [parameters]))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)


def sqlite_plan(store: Store, statement: str, parameters: Any) -> list[str]:
    """SQLite's plan for a captured statement, one step per line (``EXPLAIN QUERY PLAN``)."""
    with store.engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        return [str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]


def migrated_from_before(url: str, version: int, index: str, table: str) -> Store:
    """The store at ``url`` as a release before ``version`` left it (without ``index``), reopened and migrated.

    The migration must have created the index; the caller checks the store still answers.
    """
    store = Store(url)
    store.migrate()
    with store.transaction() as connection:
        connection.execute(sa.text(f"DROP INDEX {index}"))
        connection.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version >= version))
        assert index not in index_names(connection, table)
    store.close()
    reopened = Store(url)
    assert reopened.migrate() == tables.LATEST_VERSION
    with reopened.transaction() as connection:
        assert index in index_names(connection, table)
    return reopened


def index_names(connection: sa.Connection, table: str) -> set[str]:
    """The names of ``table``'s indexes."""
    return {str(index["name"]) for index in sa.inspect(connection).get_indexes(table)}
