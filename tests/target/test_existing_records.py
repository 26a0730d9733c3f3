"""A create whose record already exists on the other side, unseen by the store: linked, never duplicated.

The planner creates a record only when nothing staged has its email, but the store can lag the systems: an
extraction cut short (Meltano still ends the merging leg's input, so the merge runs over what was staged), or a
record created between extraction and write-back, as here. Marketo refuses the duplicate (1005) and the person is
linked; Dataverse accepts duplicate emails, so the target must look before it creates. A person's first merge then
decides as any first link does, with the contact's authority; a lead created since the extraction started, for a
person who asked for one, is linked on the create path (nothing overwritten). A lead that was only not extracted yet
is matched by the usual rules (tests/target/test_crash_matrix.py kills the Dynamics tap after its first record).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from target_mktdyn_merge.store.activity_log import iter_activities

from tests.target.worlds import World, drift_problems

RACED_LEAD = "raced.lead@person.example"
RACED_PERSON = "raced.person@contact.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("existing"), {}, persons=10, dynamics_only=2, overlap=0.5)
    yield world
    world.close()


@pytest.fixture(scope="module")
def raced(world: World) -> dict[str, Any]:
    """A flagged person and a Dynamics-only contact; their counterparts appear after extraction, before the merge."""
    (flagged,) = world.marketo.sync_leads(
        "createOnly",
        [
            {
                "email": RACED_LEAD,
                "firstName": "Rae",
                "lastName": "Lead",
                "title": "Marketo title",
                "syncToDynamics": True,
            }
        ],
        "email",
    )
    contact = world.dynamics.create(
        "contacts",
        {
            "emailaddress1": RACED_PERSON,
            "firstname": "Con",
            "lastname": "Tact",
            "jobtitle": "Dynamics title",
            "new_synctomkto": True,  # the sync filter: Dynamics-only rows go to Marketo when it allows
        },
    )
    made: dict[str, Any] = {"person": str(flagged.id), "contact": contact["contactid"]}

    def counterparts_appear() -> None:
        made["lead"] = world.dynamics.create(
            "leads", {"emailaddress1": RACED_LEAD, "subject": "Met at a fair", "lastname": "Lead", "jobtitle": "Lead"}
        )["leadid"]
        (person,) = world.marketo.sync_leads(
            "createOnly", [{"email": RACED_PERSON, "firstName": "Con", "lastName": "Tact", "title": "Person"}], "email"
        )
        made["contact_person"] = str(person.id)

    world.sync(counterparts_appear)
    made["log"] = world.pipeline.activities()
    world.settle()
    assert drift_problems(world) == []  # what the log says is what both systems hold
    return made


def test_a_lead_that_appeared_after_extraction_is_not_duplicated_and_is_linked_next_run(
    world: World, raced: dict[str, Any]
) -> None:
    assert [row["leadid"] for row in world.leads_with_email(RACED_LEAD)] == [raced["lead"]]
    skipped = [a for a in raced["log"] if a["person_id"] == raced["person"]]
    assert [a["action"] for a in skipped] == ["skipped"], skipped
    assert "already has" in skipped[0]["rule"]
    assert skipped[0]["details"]["appeared_since_extraction"] is True  # created after the tap read: the create path
    pairs = {p["marketo_id"]: p for p in world.pairs()}
    assert (pairs[raced["person"]]["entity"], pairs[raced["person"]]["dynamics_id"]) == ("lead", raced["lead"])
    # The person asked for a lead ("Sync Person to Microsoft") and one already existed: the create path's first
    # link keeps both titles and reports the difference, rather than letting Marketo overwrite the lead (issue 21).
    assert world.row("lead", raced["lead"])["jobtitle"] == "Lead"
    assert world.person(raced["person"])["title"] == "Marketo title"
    store = world.pipeline.store()
    try:
        linked = [a for a in iter_activities(store, actions=["linked"]) if a["person_id"] == raced["person"]]
    finally:
        store.close()
    assert [a["details"].get("kept_differences") for a in linked] == [
        [{"field": "title", "column": "jobtitle", "marketo": "Marketo title", "dynamics": "Lead"}]
    ]


def test_a_person_that_appeared_after_extraction_is_linked_and_its_contact_keeps_authority(
    world: World, raced: dict[str, Any]
) -> None:
    persons = world.marketo.get_leads("email", [RACED_PERSON], ["id", "title"])
    assert [str(p["id"]) for p in persons] == [raced["contact_person"]]
    linked = [a for a in raced["log"] if a["dynamics_id"] == raced["contact"] and a["action"] == "linked"]
    assert len(linked) == 1, raced["log"]
    pairs = {p["marketo_id"]: p for p in world.pairs()}
    assert (pairs[raced["contact_person"]]["entity"], pairs[raced["contact_person"]]["dynamics_id"]) == (
        "contact",
        raced["contact"],
    )
    # Not a baseline of the refused create's payload (which made the person's own title look like a Marketo edit):
    # the first merge is a collision, and Dynamics is the authority of a contact.
    assert world.row("contact", raced["contact"])["jobtitle"] == "Dynamics title"
    assert world.person(raced["contact_person"])["title"] == "Dynamics title"
