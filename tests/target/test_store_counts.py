"""Counting the store costs its keys, not its contents (issue 18).

Every run reports how many records are staged, live and deleted. Grouping the table on ``deleted_at`` read every
row, fields and all: 22 s of a million-person staging leg. These tests require the counts to be right (both
backends) and, on SQLite, every access to ``staged`` to go through an index.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store

PERSONS, LEADS = "marketo_leads", "dynamics_leads"


def person(pid: int) -> dict[str, Any]:
    return {"id": pid, "email": f"p{pid}@example.com", "updatedAt": "2026-01-01T00:00:00+00:00"}


def lead(lid: int) -> dict[str, Any]:
    return {"leadid": f"l-{lid}", "emailaddress1": f"l{lid}@example.com", "modifiedon": "2026-01-01T00:00:00+00:00"}


def filled_store(url: str) -> Store:
    """40 persons (3 deleted) and 5 leads (all deleted)."""
    store = Store(url)
    store.migrate()
    store.stage(PERSONS, [person(pid) for pid in range(40)], run_id="r1")
    store.stage(LEADS, [lead(lid) for lid in range(5)], run_id="r1")
    store.mark_deleted(PERSONS, ["3", "17", "39"], "r2")
    store.mark_deleted(LEADS, [f"l-{lid}" for lid in range(5)], "r2")
    return store


@contextmanager
def selects_on_staged(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM staged" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)


def test_counts_of_live_and_deleted_records(store_url: str) -> None:
    store = filled_store(store_url)
    try:
        assert store.staged_counts() == {PERSONS: {"live": 37, "deleted": 3}, LEADS: {"live": 0, "deleted": 5}}
    finally:
        store.close()


def test_an_empty_store_counts_nothing(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        assert store.staged_counts() == {}
    finally:
        store.close()


def test_sqlite_counts_from_indexes(tmp_path: Any) -> None:
    store = filled_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with selects_on_staged(store) as seen:
            store.staged_counts()
        assert len(seen) == 2
        with store.engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            for statement, parameters in seen:
                plan = [str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
                on_staged = [step for step in plan if " staged" in step]
                assert on_staged, (statement, plan)
                # A covering index holds keys only; the partial index holds the deleted rows only.
                assert all("COVERING INDEX" in s or "INDEX ix_staged_deleted" in s for s in on_staged), plan
    finally:
        store.close()


def test_a_store_before_version_11_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = filled_store(url)
    with store.transaction() as connection:
        connection.execute(sa.text("DROP INDEX ix_staged_deleted"))
        connection.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version >= 11))
    store.close()
    reopened = Store(url)
    try:
        assert reopened.migrate() == tables.LATEST_VERSION
        with reopened.transaction() as connection:
            names = {index["name"] for index in sa.inspect(connection).get_indexes("staged")}
        assert "ix_staged_deleted" in names
        assert reopened.staged_counts()[PERSONS] == {"live": 37, "deleted": 3}
    finally:
        reopened.close()
