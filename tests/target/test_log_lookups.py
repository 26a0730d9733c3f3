"""Planning reads its batch's persons in the activity log, not every row of an action (issue 18).

Each planning batch asks which of its persons a run planned a lead for and found one already there
(``creates_found_existing``). Answered from the action index, every ``skipped`` row of the log was read per batch,
which made a million-person initial sync's planning quadratic. Both backends for the answer; SQLite's plan for the
statement actually run; an older store gains the index.
"""

from __future__ import annotations

from typing import Any

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.store.activity_log import creates_found_existing, record_activities
from target_mktdyn_merge.store.database import Store

from tests.target.statements import captured, migrated_from_before, sqlite_plan


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
    # A lead that existed before the extraction and was only not extracted yet (a cut-short extraction), and
    # one that appeared since: only the second one's first link is on the create path.
    record_activities(
        store,
        run,
        [
            Activity(
                "skipped",
                "903",
                "lead",
                "L-3",
                "to_dynamics",
                details={"planned": "create", "appeared_since_extraction": False},
            ),
            Activity(
                "skipped",
                "904",
                "lead",
                "L-4",
                "to_dynamics",
                details={"planned": "create", "appeared_since_extraction": True},
            ),
        ],
    )
    dry = store.start_run("dry_run")
    record_activities(store, dry, [skipped_create("902")], dry_run=True)
    return store


def test_the_persons_whose_planned_create_found_a_lead(store_url: str) -> None:
    store = filled_store(store_url)
    try:
        with store.transaction() as connection:
            found = creates_found_existing(connection, ["7", "299", "900", "901", "902", "903", "904", "nobody"])
        # Not an update skipped, another action, what a dry run would have done, or a lead that was only not
        # extracted yet; entries from before the flag (7, 299) count, as the create path overwrites nothing.
        assert found == {"7", "299", "904"}
    finally:
        store.close()


def test_sqlite_reads_the_batch_persons_rows(tmp_path: Any) -> None:
    store = filled_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with captured(store, "SELECT", "activity_log") as seen, store.transaction() as connection:
            creates_found_existing(connection, ["7", "8"])
        [(statement, parameters)] = seen
        plan = sqlite_plan(store, statement, parameters)
        assert plan
        assert all("ix_activity_log_person_action" in step for step in plan), plan
    finally:
        store.close()


def test_a_store_before_version_13_gains_the_index(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    filled_store(url).close()
    reopened = migrated_from_before(url, 13, "ix_activity_log_person_action", "activity_log")
    try:
        with reopened.transaction() as connection:
            assert creates_found_existing(connection, ["7"]) == {"7"}
    finally:
        reopened.close()
