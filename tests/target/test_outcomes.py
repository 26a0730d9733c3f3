"""What a confirmed create leaves in the store: the pair, and a baseline only of values we really wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.baseline import BaselineEntry
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.pair_merge import MergeContext
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite, WrittenField
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import due_entries, plan_writes
from target_mktdyn_merge.store.pairs import pairs_by_person, save_pair
from target_mktdyn_merge.sync.outcomes import Outcomes

CONTACT = {
    "contactid": "c-1",
    "modifiedon": "2024-05-01T00:00:00Z",
    "emailaddress1": "ada@example.org",
    "firstname": "Ada",
    "jobtitle": "CFO",
}


def confirm_person_create(tmp_path: Path, *, linked_existing: bool) -> Pair:
    """Plan a Marketo create for a staged contact, confirm it as person 7, return the pair it leaves."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.migrate()
        run_id = store.start_run("merge")
        store.stage("dynamics_contacts", [CONTACT], run_id)
        payload = {"email": "ada@example.org", "firstName": "Ada", "title": "CFO"}
        write = PlannedWrite(
            "marketo", "create", payload, entity="contact", context=OutboxContext(dynamics_id="c-1", entity="contact")
        )
        with store.transaction() as connection:
            plan_writes(connection, run_id, [write])
            (entry,) = due_entries(connection, "9999")
        metadata = SyncMetadata(marketo_fields={}, dynamics_attributes={"lead": {}, "contact": {}})
        outcomes = Outcomes(store, run_id, MergeContext(metadata, DEFAULT_FIELD_MAP, 1))
        outcomes.confirmed(entry, payload, created_id="7", linked_existing=linked_existing)
        with store.transaction() as connection:
            return pairs_by_person(connection, ["7"])["7"]
    finally:
        store.close()


def test_a_person_we_created_is_paired_with_a_baseline_of_what_was_written(tmp_path: Path) -> None:
    pair = confirm_person_create(tmp_path, linked_existing=False)
    assert (pair.entity, pair.dynamics_id, pair.first_merge_done) == ("contact", "c-1", True)
    assert pair.baseline["title"].marketo == pair.baseline["title"].dynamics == "CFO"


def test_a_person_that_already_existed_is_paired_with_no_baseline_so_its_first_merge_decides(tmp_path: Path) -> None:
    """Marketo refused the create (1005, the email is taken): the person holds its own values, not our payload.

    Claiming the payload as its baseline made each of its values look like a Marketo edit, which then overwrote
    the contact (Dynamics' authority) when the merge had run over an interrupted export.
    """
    pair = confirm_person_create(tmp_path, linked_existing=True)
    assert (pair.entity, pair.dynamics_id) == ("contact", "c-1")
    assert pair.baseline == {}
    assert pair.first_merge_done is False


def confirm_dynamics_update(tmp_path: Path, representation: dict[str, object]) -> tuple[Pair, list[dict[str, Any]]]:
    """Confirm a planned Dynamics update of jobtitle (Marketo's "CTO") with ``representation``; the pair and log."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.migrate()
        run_id = store.start_run("merge")
        pair = Pair("7", "lead", "l-1", "marketo", baseline={"title": BaselineEntry("CFO", "CFO")})
        with store.transaction() as connection:
            save_pair(connection, pair, run_id)
        write = PlannedWrite(
            "dynamics",
            "update",
            {"jobtitle": "CTO"},
            entity="lead",
            target_id="l-1",
            context=OutboxContext(person_id="7", fields=(WrittenField("title", "jobtitle", "string", "CTO"),)),
            activity=Activity(
                "updated", "7", "lead", "l-1", "to_dynamics", fields=[FieldChange("jobtitle", "CFO", "CTO")]
            ),
        )
        with store.transaction() as connection:
            plan_writes(connection, run_id, [write])
            (entry,) = due_entries(connection, "9999")
        metadata = SyncMetadata(marketo_fields={}, dynamics_attributes={"lead": {}, "contact": {}})
        outcomes = Outcomes(store, run_id, MergeContext(metadata, DEFAULT_FIELD_MAP, 1))
        outcomes.confirmed(entry, representation)
        with store.transaction() as connection:
            stored = pairs_by_person(connection, ["7"])["7"]
        return stored, list(iter_activities(store, run_id))
    finally:
        store.close()


def test_a_dynamics_update_moves_the_baseline_to_the_returned_representation(tmp_path: Path) -> None:
    pair, log = confirm_dynamics_update(tmp_path, {"leadid": "l-1", "jobtitle": "  CTO "})
    assert pair.baseline["title"] == BaselineEntry("CTO", "CTO")
    assert [a["action"] for a in log] == ["updated"]


def test_a_column_dynamics_silently_ignored_is_write_ignored_with_a_stable_baseline(tmp_path: Path) -> None:
    pair, log = confirm_dynamics_update(tmp_path, {"leadid": "l-1", "jobtitle": "CFO"})
    [ignored] = log
    assert ignored["action"] == "write_ignored"
    assert ignored["direction"] == "to_dynamics"
    assert ignored["fields"] == [{"field": "jobtitle", "old": "CTO", "new": "CFO"}]
    assert "jobtitle: sent 'CTO', Dynamics stored 'CFO'" in ignored["error_message"]
    # each side at what it holds: the next merge sees neither side changed (no retry loop), and verify explains it
    assert pair.baseline["title"] == BaselineEntry("CTO", "CFO")


def test_a_value_edited_between_the_write_and_its_read_back_keeps_the_old_baseline(tmp_path: Path) -> None:
    """Stored is neither what was sent (CTO) nor what was there (CFO): someone's edit, merged next run, not kept."""
    pair, log = confirm_dynamics_update(tmp_path, {"leadid": "l-1", "jobtitle": "CEO"})
    assert [a["action"] for a in log] == ["write_ignored"]
    assert pair.baseline["title"] == BaselineEntry("CFO", "CFO")
