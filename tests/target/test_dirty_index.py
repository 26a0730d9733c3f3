"""Finding what changed costs what changed: the partial index of rows the merge has not seen (issue 18).

A quiet run asks "which staged records changed since the merge last looked?" once per stream and once for the
counts. Without ``ix_staged_dirty`` each question scans the whole table; these tests require the answers to be
right (both backends) and, on SQLite, the planner to answer the real queries from the index.
"""

from __future__ import annotations

from typing import Any

from target_mktdyn_merge.store import history
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.staging import mark_merged

from tests.target.statements import captured, index_names, migrated_from_before, sqlite_plan

STREAM = "marketo_leads"


def person(pid: int, name: str) -> dict[str, Any]:
    return {"id": pid, "email": f"p{pid}@example.com", "firstName": name, "updatedAt": "2026-01-01T00:00:00+00:00"}


def staged_store(store_url: str, count: int, changed: set[int]) -> Store:
    """``count`` persons staged and merged, then ``changed`` of them staged again with new content."""
    store = Store(store_url)
    store.migrate()
    store.stage(STREAM, [person(pid, "first") for pid in range(count)], run_id="r1")
    for batch in store.dirty_records(STREAM):
        with store.transaction() as connection:
            mark_merged(connection, {STREAM: batch})
    later = [{**person(pid, "second"), "updatedAt": "2026-01-02T00:00:00+00:00"} for pid in sorted(changed)]
    store.stage(STREAM, later, run_id="r2")
    return store


def test_only_changed_records_are_found(store_url: str) -> None:
    store = staged_store(store_url, 300, changed={7, 150, 299})
    try:
        found = [record.record_id for batch in store.dirty_records(STREAM, batch_size=2) for record in batch]
        assert found == sorted(["7", "150", "299"])
        assert history.changed_counts(store) == {STREAM: 3}
        with store.transaction() as connection:
            assert "ix_staged_dirty" in index_names(connection, "staged")
    finally:
        store.close()


def test_sqlite_answers_from_the_partial_index(tmp_path: Any) -> None:
    store = staged_store(f"sqlite:///{tmp_path / 'store.db'}", 2_000, changed={42})
    try:
        with captured(store, "SELECT", "staged") as seen:
            assert [r.record_id for batch in store.dirty_records(STREAM) for r in batch] == ["42"]
            assert history.changed_counts(store) == {STREAM: 1}
        assert len(seen) >= 2
        for statement, parameters in seen:
            plan = sqlite_plan(store, statement, parameters)
            on_staged = [step for step in plan if " staged" in step]
            # Scanning the partial index reads only the changed rows; any other access to staged reads them all.
            assert on_staged, (statement, plan)
            assert all("ix_staged_dirty" in step for step in on_staged), (statement, plan)
    finally:
        store.close()


def test_a_store_before_version_10_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    staged_store(url, 10, changed={3}).close()
    reopened = migrated_from_before(url, 10, "ix_staged_dirty", "staged")
    try:
        assert [r.record_id for batch in reopened.dirty_records(STREAM) for r in batch] == ["3"]
    finally:
        reopened.close()


def test_a_pass_can_ask_for_the_records_holding_a_text_value_in_a_field(store_url: str) -> None:
    """The planner's qualified contacts: the database filters, so only the rows with the lookup are decoded."""
    store = Store(store_url)
    store.migrate()
    contacts = "dynamics_contacts"
    base = {"modifiedon": "2026-01-01T00:00:00+00:00"}
    try:
        store.stage(
            contacts,
            [
                {**base, "contactid": "c-1", "_originatingleadid_value": "lead-1"},
                {**base, "contactid": "c-2", "_originatingleadid_value": None},
                {**base, "contactid": "c-3"},
                # '_' is a LIKE wildcard: a look-alike field name must not match.
                {**base, "contactid": "c-4", "Xoriginatingleadid_value": "lead-4"},
                {**base, "contactid": "c-5", "_originatingleadid_value": "lead-5", "firstname": 'say "hi"'},
            ],
            run_id="r1",
        )
        for batch in store.dirty_records(contacts, with_text_in="_originatingleadid_value"):
            if any(r.record_id == "c-5" for r in batch):
                with store.transaction() as connection:
                    mark_merged(connection, {contacts: [r for r in batch if r.record_id == "c-5"]})
        found = [
            r.record_id
            for batch in store.dirty_records(contacts, batch_size=1, with_text_in="_originatingleadid_value")
            for r in batch
        ]
        assert found == ["c-1"]  # c-5 holds one too, but the merge has seen it
        assert len([r for batch in store.dirty_records(contacts) for r in batch]) == 4
    finally:
        store.close()
