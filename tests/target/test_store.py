"""The store on both backends (SQLite and PostgreSQL): migrations, refusal of newer stores, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import StoreError
from target_mktdyn_merge.store.database import Store


def versions(store: Store) -> list[int]:
    with store.transaction() as connection:
        return list(connection.execute(sa.select(tables.schema_version.c.version).order_by("version")).scalars())


def all_at_once(count: int, work: Callable[[int], object]) -> None:
    """Run ``work(i)`` in ``count`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]


def test_migrate_creates_every_table_once(store_url: str) -> None:
    store = Store(store_url)
    try:
        assert store.migrate() == tables.LATEST_VERSION
        assert store.migrate() == tables.LATEST_VERSION  # reopening changes nothing
        assert versions(store) == list(range(1, tables.LATEST_VERSION + 1))
        assert set(tables.metadata.tables) <= set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_a_store_written_by_a_newer_release_is_refused(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.migrate()
        with store.transaction() as connection:
            connection.execute(
                sa.insert(tables.schema_version).values(version=tables.LATEST_VERSION + 1, applied_at="later")
            )
        with pytest.raises(StoreError, match=r"newer than this release understands .*upgrade target-mktdyn-merge"):
            Store(store_url).migrate()
        assert versions(store) == [*range(1, tables.LATEST_VERSION + 1), tables.LATEST_VERSION + 1]
    finally:
        store.close()


def test_runs_opening_a_fresh_store_at_once_migrate_it_once(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]  # one engine each: as separate processes would
    try:
        all_at_once(len(stores), lambda i: stores[i].migrate())
        assert versions(stores[0]) == list(range(1, tables.LATEST_VERSION + 1))
    finally:
        for store in stores:
            store.close()


def person(record_id: str) -> dict[str, Any]:
    return {"id": record_id, "updatedAt": "2026-01-02T00:00:00Z", "email": f"{record_id}@x.example"}


def test_concurrent_staging_never_hands_out_a_sequence_number_twice(store_url: str) -> None:
    Store(store_url).migrate()
    stores = [Store(store_url) for _ in range(4)]

    def stage(worker: int) -> None:
        for batch in range(5):
            stores[worker].stage("marketo_leads", [person(f"{worker}-{batch}-{i}") for i in range(3)], "run")

    try:
        all_at_once(len(stores), stage)
        staged = tables.staged
        with stores[0].transaction() as connection:
            rows = connection.execute(sa.select(staged.c.arrival, staged.c.changed_seq)).all()
        assert len(rows) == 4 * 5 * 3
        assert len({r.arrival for r in rows}) == len(rows)
        assert len({r.changed_seq for r in rows}) == len(rows)
    finally:
        for store in stores:
            store.close()


def test_an_older_store_gets_the_dry_run_mark_with_its_dry_runs_marked(store_url: str) -> None:
    """Migration 4 on a store whose activity log predates the ``dry_run`` column (issue 21 item 2)."""
    store = Store(store_url)
    try:
        store.migrate()
        with store.transaction() as connection:
            connection.execute(sa.text("ALTER TABLE activity_log DROP COLUMN dry_run"))
            connection.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version >= 4))
            for run_id, mode in (("old-dry", "dry_run"), ("old-real", "merge")):
                connection.execute(
                    sa.insert(tables.runs).values(run_id=run_id, mode=mode, status="succeeded", started_at="then")
                )
                connection.execute(
                    sa.text("INSERT INTO activity_log (run_id, at, action) VALUES (:run, 'then', 'updated')"),
                    {"run": run_id},
                )
        assert Store(store_url).migrate() == tables.LATEST_VERSION
        with store.transaction() as connection:
            rows = connection.execute(sa.select(tables.activity_log.c.run_id, tables.activity_log.c.dry_run)).all()
        marks = {row.run_id: row.dry_run for row in rows}
        assert marks == {"old-dry": True, "old-real": False}
    finally:
        store.close()
