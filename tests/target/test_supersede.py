"""A newer plan retires the owed entries it replaces, reading those entries, not every owed one (issue 18).

``supersede`` runs with every planning batch. Answered from the status index, each statement read every owed
entry: an initial sync's hundreds of thousands of planned writes made it quadratic (minutes of a million-person
planning). Both backends for what is retired; SQLite's plan for the statements actually run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.core.writes import PlannedWrite
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import plan_writes, supersede

from tests.target.statements import captured, migrated_from_before, sqlite_plan


def update(target: str, value: str) -> PlannedWrite:
    return PlannedWrite("dynamics", "update", {"jobtitle": value}, entity="lead", target_id=target)


def keyed(key: str) -> PlannedWrite:
    return PlannedWrite("marketo", "create", {"email": f"{key}@example.com"}, idempotency_key=key)


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
        with captured(store, "UPDATE", "outbox") as seen, store.transaction() as connection:
            supersede(connection, [update("lead-1", "b"), keyed("k-1")])
        assert len(seen) == 2
        for statement, parameters in seen:
            plan = sqlite_plan(store, statement, parameters)
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
        plan_writes(connection, "r1", [update("lead-1", "a")])
    store.close()
    reopened = migrated_from_before(url, 12, "ix_outbox_target", "outbox")
    try:
        with reopened.transaction() as connection:
            assert supersede(connection, [update("lead-1", "b")]) == 1
    finally:
        reopened.close()
