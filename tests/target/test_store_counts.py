"""Counting the store costs its keys, not its contents (issue 18).

Every run reports how many records are staged, live and deleted. Grouping the table on ``deleted_at`` read every
row, fields and all: 22 s of a million-person staging leg. These tests require the counts to be right (both
backends) and, on SQLite, every access to ``staged`` to go through an index.
"""

from __future__ import annotations

from typing import Any

from target_mktdyn_merge.store.database import Store

from tests.target.statements import captured, migrated_from_before, sqlite_plan

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
        with captured(store, "SELECT", "staged") as seen:
            store.staged_counts()
        assert len(seen) == 2
        for statement, parameters in seen:
            plan = sqlite_plan(store, statement, parameters)
            on_staged = [step for step in plan if " staged" in step]
            assert on_staged, (statement, plan)
            # A covering index holds keys only; the partial index holds the deleted rows only.
            assert all("COVERING INDEX" in s or "INDEX ix_staged_deleted" in s for s in on_staged), plan
    finally:
        store.close()


def test_a_store_before_version_11_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    filled_store(url).close()
    reopened = migrated_from_before(url, 11, "ix_staged_deleted", "staged")
    try:
        assert reopened.staged_counts()[PERSONS] == {"live": 37, "deleted": 3}
    finally:
        reopened.close()
