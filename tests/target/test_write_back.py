"""Write-back through the real taps and the real target CLI against the sandbox (issue 7).

The sandbox's stored records are the oracle: after a sync, what each system holds must be what the merge
rules say, and its counters must show exactly the writes the rules call for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.target.worlds import World, drift_problems


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_store_url: str) -> Iterator[World]:
    """One world per store backend: every write-back test runs on SQLite and on PostgreSQL."""
    world = World(tmp_path_factory.mktemp("write-back"), {}, store_url=module_store_url)
    world.sync()
    yield world
    world.close()


def test_a_sync_right_after_a_sync_makes_zero_write_calls(world: World) -> None:
    world.sync()  # absorbs what the first sync created, now extracted back
    world.reset_stats()
    world.sync()
    assert world.writes() == (0, 0)


@pytest.fixture(scope="module")
def edited(world: World) -> dict[str, Any]:
    """Users edit both systems (some of it between extraction and write-back), then the job runs."""
    admin = world.admin
    leads, contacts = world.in_sync("lead"), world.in_sync("contact")
    assert len(leads) >= 5, "the seed must give linked, in-sync leads"
    assert contacts, "the seed must give linked, in-sync contacts"
    names = ("collision_lead", "different", "race_412", "marketo_race", "bad_option")
    picked = dict(zip(names, leads, strict=False))
    picked["collision_contact"] = contacts[0]
    for key, label in (("collision_lead", "lead"), ("collision_contact", "contact")):
        pair = picked[key]
        admin.marketo.edit("person", pair["marketo_id"], {"title": f"Marketo title ({label})"})
        admin.dynamics.edit(pair["entity"], pair["dynamics_id"], {"jobtitle": f"Dynamics title ({label})"})
    admin.marketo.edit("person", picked["different"]["marketo_id"], {"firstName": "Mélanie"})
    admin.dynamics.edit("lead", picked["different"]["dynamics_id"], {"jobtitle": "Chief O'Neil Officer"})
    admin.marketo.edit("person", picked["race_412"]["marketo_id"], {"firstName": "Raced"})
    admin.dynamics.edit("lead", picked["marketo_race"]["dynamics_id"], {"jobtitle": "Dynamics side title"})
    admin.marketo.edit("person", picked["bad_option"]["marketo_id"], {"leadSource": "Carrier Pigeon"})
    existing_lead = world.dynamics.create(
        "leads", {"lastname": "Existing", "subject": "x", "emailaddress1": "existing@lead.example"}
    )
    created = world.marketo.sync_leads(
        "createOnly",
        [
            {"email": "nova@person.example", "firstName": "Nova", "lastName": "Flagged", "syncToDynamics": True},
            {"email": "EXISTING@lead.example", "firstName": "Exi", "lastName": "Sting", "syncToDynamics": True},
            {"email": "long@person.example", "firstName": "X" * 60, "lastName": "Long", "syncToDynamics": True},
            {"email": "nolast@person.example", "firstName": "No", "syncToDynamics": True},
        ],
        "email",
    )
    assert [o.status for o in created] == ["created"] * 4
    ids = dict(zip(("new", "existing", "too_long", "no_lastname"), (str(o.id) for o in created), strict=True))

    def between_extraction_and_write_back() -> None:
        admin.dynamics.edit("lead", picked["race_412"]["dynamics_id"], {"mobilephone": "+1 425 555 0412"})
        admin.marketo.edit("person", picked["marketo_race"]["marketo_id"], {"title": "Marketo side title"})

    world.reset_stats()
    result = world.sync(between_extraction_and_write_back)
    return {
        "picked": picked,
        "ids": ids,
        "result": result,
        "log": world.pipeline.activities(),
        "existing_lead": existing_lead["leadid"],
    }


def test_collision_on_a_lead_marketo_wins_in_both_systems(world: World, edited: dict[str, Any]) -> None:
    pair = edited["picked"]["collision_lead"]
    assert world.row("lead", pair["dynamics_id"])["jobtitle"] == "Marketo title (lead)"
    assert world.person(pair["marketo_id"])["title"] == "Marketo title (lead)"


def test_collision_on_a_contact_dynamics_wins_in_both_systems(world: World, edited: dict[str, Any]) -> None:
    pair = edited["picked"]["collision_contact"]
    assert world.row("contact", pair["dynamics_id"])["jobtitle"] == "Dynamics title (contact)"
    assert world.person(pair["marketo_id"])["title"] == "Dynamics title (contact)"


def test_edits_to_different_fields_both_land(world: World, edited: dict[str, Any]) -> None:
    pair = edited["picked"]["different"]
    row, person = world.row("lead", pair["dynamics_id"]), world.person(pair["marketo_id"])
    assert (row["firstname"], row["jobtitle"]) == ("Mélanie", "Chief O'Neil Officer")
    assert (person["firstName"], person["title"]) == ("Mélanie", "Chief O'Neil Officer")


def test_flagged_person_creates_exactly_one_lead_and_an_existing_one_is_linked(
    world: World, edited: dict[str, Any]
) -> None:
    created = world.leads_with_email("nova@person.example")
    assert len(created) == 1
    assert (created[0]["firstname"], created[0]["lastname"]) == ("Nova", "Flagged")
    existing = world.leads_with_email("existing@lead.example")
    # Linked, not duplicated: the same row. The person asked for a lead and one existed (the create path, issue 21
    # item 7): the lead's own last name is kept, its blank first name is filled from the person.
    assert [r["leadid"] for r in existing] == [edited["existing_lead"]]
    assert (existing[0]["firstname"], existing[0]["lastname"]) == ("Exi", "Existing")
    pairs = {p["marketo_id"]: p for p in world.pairs()}
    assert pairs[edited["ids"]["new"]]["dynamics_id"] == created[0]["leadid"]
    assert pairs[edited["ids"]["existing"]]["dynamics_id"] == existing[0]["leadid"]


@pytest.mark.parametrize(
    ("case", "column", "rule"),
    [("too_long", "firstname", "max_length"), ("no_lastname", "lastname", "required")],
)
def test_values_dynamics_would_reject_are_not_sent_and_are_logged(
    world: World, edited: dict[str, Any], case: str, column: str, rule: str
) -> None:
    person_id = edited["ids"][case]
    assert world.leads_with_email(world.person(person_id)["email"]) == []
    failures = [a for a in edited["log"] if a["person_id"] == person_id and a["action"] == "validation_failed"]
    assert len(failures) == 1
    assert column in failures[0]["rule"]
    assert rule in failures[0]["rule"]
    assert column in failures[0]["error_message"]
    posted = world.marketo_activities(person_id)
    actions = [
        next(a["value"] for a in p["attributes"] if a.get("apiName", a.get("name")) in ("action", "Action"))
        for p in posted
    ]
    assert "validation_failed" in actions


def test_a_bad_option_label_is_not_sent(world: World, edited: dict[str, Any]) -> None:
    pair = edited["picked"]["bad_option"]
    failures = [a for a in edited["log"] if a["person_id"] == pair["marketo_id"] and a["action"] == "validation_failed"]
    assert failures
    assert "leadsourcecode" in failures[0]["rule"]
    # Named as what it is (not an option, and which ones there are), not as a type error.
    assert "'Carrier Pigeon' is not an option of Lead Source (options: 1 " in failures[0]["error_message"]
    assert world.row("lead", pair["dynamics_id"])["leadsourcecode"] != "Carrier Pigeon"


def test_a_412_race_loses_no_edit(world: World, edited: dict[str, Any]) -> None:
    pair = edited["picked"]["race_412"]
    row, person = world.row("lead", pair["dynamics_id"]), world.person(pair["marketo_id"])
    assert row["firstname"] == "Raced"  # our write, re-sent with the fresh ETag
    assert row["mobilephone"] == "+1 425 555 0412"  # the concurrent Dynamics edit survived
    assert person["mobilePhone"] == "+1 425 555 0412"  # and flowed to Marketo in the same run


def test_a_marketo_edit_between_extraction_and_write_back_is_not_overwritten(
    world: World, edited: dict[str, Any]
) -> None:
    pair = edited["picked"]["marketo_race"]
    assert world.person(pair["marketo_id"])["title"] == "Marketo side title"
    assert world.row("lead", pair["dynamics_id"])["jobtitle"] == "Marketo side title"  # lead: Marketo wins


def test_then_a_second_sync_makes_zero_write_calls(world: World, edited: dict[str, Any]) -> None:
    world.sync()  # what the edited run wrote comes back once through extraction
    world.reset_stats()
    world.sync()
    assert world.writes() == (0, 0)
    assert drift_problems(world) == []  # and what the log says is what both systems hold


@pytest.mark.parametrize(
    ("policy", "expect_marketo", "expect_dynamics"),
    [
        ({}, "kept", "kept"),
        ({"delete_from_marketo": "flag", "delete_from_dynamics": "flag"}, "flagged", "flagged"),
        ({"delete_from_marketo": "delete", "delete_from_dynamics": "delete"}, "deleted", "deleted"),
    ],
    ids=["ignore", "flag", "delete"],
)
def test_delete_policies(tmp_path: Path, policy: dict[str, str], expect_marketo: str, expect_dynamics: str) -> None:
    world = World(tmp_path, policy, persons=40, dynamics_only=4)
    try:
        world.sync()
        lead_pair, other = world.in_sync("lead")[:2]
        world.admin.dynamics.delete("lead", lead_pair["dynamics_id"])  # deleted in Dynamics: the person's fate
        world.admin.marketo.delete("person", other["marketo_id"])  # deleted in Marketo: the lead's fate
        world.sync()
        person = world.admin.marketo.record("person", lead_pair["marketo_id"])
        row = world.admin.dynamics.record("lead", other["dynamics_id"])
        state_m = "deleted" if person is None else ("flagged" if person.get("deletedInDynamics") else "kept")
        state_d = "deleted" if row is None else ("flagged" if row.get("mkt_deletedinmarketo") else "kept")
        assert (state_m, state_d) == (expect_marketo, expect_dynamics)
        linked = {p["marketo_id"] for p in world.pairs()}
        assert lead_pair["marketo_id"] not in linked
        assert other["marketo_id"] not in linked
        world.sync()
        world.reset_stats()
        world.sync()
        assert world.writes() == (0, 0)
    finally:
        world.close()


def test_a_deleted_person_comes_back_only_when_its_lead_changes(tmp_path: Path) -> None:
    """Default policy (ignore): the lead survives and the person is re-created once the lead is edited."""
    world = World(tmp_path, {}, persons=40, dynamics_only=4)
    try:
        world.sync()
        pair = world.in_sync("lead")[0]
        email = world.person(pair["marketo_id"])["email"]
        world.admin.marketo.delete("person", pair["marketo_id"])
        world.sync()
        world.sync()
        assert list(world.marketo.get_leads("email", [email], ["id"])) == []
        world.admin.dynamics.edit("lead", pair["dynamics_id"], {"jobtitle": "Still interested"})
        world.sync()
        again = list(world.marketo.get_leads("email", [email], ["id", "title"]))
        assert [p["title"] for p in again] == ["Still interested"]
        assert {p["marketo_id"]: p["dynamics_id"] for p in world.pairs()}[str(again[0]["id"])] == pair["dynamics_id"]
    finally:
        world.close()


def test_record_failures_beyond_the_limit_fail_the_run_after_recording_everything(tmp_path: Path) -> None:
    world = World(tmp_path, {"max_record_failures": 0}, persons=30, dynamics_only=2)
    try:
        world.sync()
        created = world.marketo.sync_leads(
            "createOnly",
            [{"email": "long.name@person.example", "firstName": "Y" * 61, "lastName": "Long", "syncToDynamics": True}],
            "email",
        )
        result = world.sync(check=False)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[-1] == (
            "target-mktdyn-merge: 1 record-level failures exceed max_record_failures=0; see `mktdyn report`"
        )
        failures = [a for a in world.pipeline.activities() if a["action"] == "validation_failed"]
        assert [a["person_id"] for a in failures] == [str(created[0].id)]
        assert world.leads_with_email("long.name@person.example") == []
    finally:
        world.close()


def test_throttled_dynamics_writes_are_retried_not_counted_as_failures(tmp_path: Path) -> None:
    """Dataverse service protection (429 inside a `$batch`) means "later", never a failed record."""
    world = World(tmp_path, {"dynamics_batch_size": 10}, persons=60, dynamics_only=2, limits=True)
    try:
        # The strict model (each `$batch` operation takes a slot) is the one that throttles inside a batch.
        world.admin.dynamics.config(requests_per_window=45, window_seconds=3, batch_operations_count=True)
        emails = [f"throttle{i}@person.example" for i in range(25)]
        world.marketo.sync_leads(
            "createOnly",
            [
                {"email": e, "firstName": "T", "lastName": f"Hrottle{i}", "syncToDynamics": True}
                for i, e in enumerate(emails)
            ],
            "email",
        )
        first = world.sync()
        assert "Dataverse throttled" in first.stderr, "the window never throttled: the test proves nothing"
        assert not [a for a in world.pipeline.activities() if a["action"] == "write_failed"]
        world.sync()  # anything still owed after the in-run waits goes now
        assert not [a for a in world.pipeline.activities() if a["action"] == "write_failed"]
        assert all(len(world.leads_with_email(e)) == 1 for e in emails)
    finally:
        world.close()
