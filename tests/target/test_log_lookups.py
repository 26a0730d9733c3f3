"""Planning reads its batch's persons in the activity log, not every row of an action (issue 18).

Each planning batch asks which of its persons a run planned a lead for and found one already there
(``creates_found_existing``). Answered from the action index, every ``skipped`` row of the log was read per batch,
which made a million-person initial sync's planning quadratic. Both backends for the answer; SQLite's plan for the
statement actually run; an older store gains the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import creates_found_existing, record_activities
from target_mktdyn_merge.store.database import Store


def skipped_create(person: str) -> Activity:
    return Activity("skipped", person, "lead", None, "to_dynamics", details={"planned": "create"})


def filled_store(url: str) -> Store:
    store = Store(url)
    store.migrate()
    run = store.start_run("merge")
    record_activities(store, run, [skipped_create(str(n)) for n in range(300)])
    record_activities(
        store, run, [Activity("skipped", "900", "lead", None, "to_dynamics", details={"planned": "update"})]
    )
    record_activities(store, run, [Activity("updated", "901", "lead", "L-1", "to_dynamics")])
    dry = store.start_run("dry_run")
    record_activities(store, dry, [skipped_create("902")], dry_run=True)
    return store


@contextmanager
def log_selects(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM activity_log" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)


def test_the_persons_whose_planned_create_found_a_lead(store_url: str) -> None:
    store = filled_store(store_url)
    try:
        with store.transaction() as connection:
            found = creates_found_existing(connection, ["7", "299", "900", "901", "902", "nobody"])
        assert found == {"7", "299"}  # not an update skipped, another action, or what a dry run would have done
    finally:
        store.close()


def test_sqlite_reads_the_batch_persons_rows(tmp_path: Any) -> None:
    store = filled_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with log_selects(store) as seen, store.transaction() as connection:
            creates_found_existing(connection, ["7", "8"])
        assert len(seen) == 1
        with store.engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            [(statement, parameters)] = seen
            plan = [str(row[-1]) for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert plan
            assert all("ix_activity_log_person_action" in step for step in plan), plan
    finally:
        store.close()


def test_a_store_before_version_13_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = filled_store(url)
    with store.transaction() as connection:
        connection.execute(sa.text("DROP INDEX ix_activity_log_person_action"))
        connection.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version >= 13))
    store.close()
    reopened = Store(url)
    try:
        assert reopened.migrate() == tables.LATEST_VERSION
        with reopened.transaction() as connection:
            names = {index["name"] for index in sa.inspect(connection).get_indexes("activity_log")}
            assert "ix_activity_log_person_action" in names
            assert creates_found_existing(connection, ["7"]) == {"7"}
    finally:
        reopened.close()
