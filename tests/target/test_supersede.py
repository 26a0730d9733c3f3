"""A newer plan retires the owed entries it replaces, reading those entries, not every owed one (issue 18).

``supersede`` runs with every planning batch. Answered from the status index, each statement read every owed
entry: an initial sync's hundreds of thousands of planned writes made it quadratic (minutes of a million-person
planning). Both backends for what is retired; SQLite's plan for the statements actually run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.core.writes import PlannedWrite
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import plan_writes, supersede


def update(target: str, value: str) -> PlannedWrite:
    return PlannedWrite("dynamics", "update", {"jobtitle": value}, entity="lead", target_id=target)


def keyed(key: str) -> PlannedWrite:
    return PlannedWrite("marketo", "create", {"email": f"{key}@example.com"}, idempotency_key=key)


@contextmanager
def outbox_updates(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)


def statuses(store: Store) -> dict[str, str]:
    outbox = tables.outbox
    with store.transaction() as connection:
        rows = connection.execute(sa.select(outbox.c.target_id, outbox.c.idempotency_key, outbox.c.status)).all()
    return {str(target or key): str(status) for target, key, status in rows}


def test_a_newer_plan_retires_what_it_replaces_and_nothing_else(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        with store.transaction() as connection:
            plan_writes(connection, "r1", [update("lead-1", "a"), update("lead-2", "a"), keyed("k-1"), keyed("k-2")])
        with store.transaction() as connection:
            retired = supersede(connection, [update("lead-1", "b"), keyed("k-2"), update("lead-9", "b")])
        assert retired == 2
        assert statuses(store) == {"lead-1": "superseded", "lead-2": "planned", "k-1": "planned", "k-2": "superseded"}
    finally:
        store.close()


def test_sqlite_finds_the_replaced_entries_by_target_and_key(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    try:
        with store.transaction() as connection:
            plan_writes(connection, "r1", [update(f"lead-{n}", "a") for n in range(200)] + [keyed("k-1")])
        with outbox_updates(store) as seen, store.transaction() as connection:
            supersede(connection, [update("lead-1", "b"), keyed("k-1")])
        assert len(seen) == 2
        with store.engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            for statement, parameters in seen:
                plan = [str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
                assert plan, statement
                # By target or by key: the owed entries of other records are not read.
                assert all("ix_outbox_target" in s or "ix_outbox_idempotency_key" in s for s in plan), plan
    finally:
        store.close()


def test_a_store_before_version_12_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    store.migrate()
    with store.transaction() as connection:
        connection.execute(sa.text("DROP INDEX ix_outbox_target"))
        connection.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version >= 12))
        names = {index["name"] for index in sa.inspect(connection).get_indexes("outbox")}
    assert "ix_outbox_target" not in names
    store.close()
    reopened = Store(url)
    try:
        assert reopened.migrate() == tables.LATEST_VERSION
        with reopened.transaction() as connection:
            names = {index["name"] for index in sa.inspect(connection).get_indexes("outbox")}
        assert "ix_outbox_target" in names
    finally:
        reopened.close()
