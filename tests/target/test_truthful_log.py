"""What the log and the settings say is what the systems hold, through the plugins' CLIs (issue 21 items 2, 3, 6, 7).

One small sandbox: an initial sync links pairs and posts outcomes as Marketo custom activities, then:

- two dry runs and a real run over the same edits: only the real run's outcomes reach the persons' Marketo
  activity logs, once each; the dry runs' rows are marked in the activity log itself (item 2);
- collisions read the way they are written: old is the value overwritten on the side written to, new the
  winning value, in the JSON log and in the posted activities (item 6);
- a person flagged for a Dynamics lead whose lead already exists: the link fills blanks and keeps (and reports)
  differences, and only later changes flow (item 7);
- each delete setting does what its description (``--about``) says: the side it names as deleted is deleted,
  and the side it names as acted on is flagged (item 3).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.target.worlds import World

BIN = Path(sys.executable).parent
FLAGGED_EMAIL = "pigeon.keeper@existing.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("truthful"), {}, persons=14, dynamics_only=2, overlap=0.8, seed=8)
    world.sync()
    yield world
    world.close()


def mktdyn(world: World, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "mktdyn"), "--store-url", world.pipeline.store_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def attribute(activity: dict[str, Any], name: str) -> Any:
    return next(a["value"] for a in activity["attributes"] if a.get("apiName", a.get("name")) == name)


@pytest.fixture(scope="module")
def dry_then_real(world: World) -> dict[str, Any]:
    """Edits, then two dry runs and one real run of the job over them."""
    leads, contacts = world.in_sync("lead"), world.in_sync("contact")
    updated, collided, contact = leads[0], leads[1], contacts[0]
    world.admin.marketo.edit("person", updated["marketo_id"], {"title": "Edited in Marketo"})
    world.admin.marketo.edit("person", collided["marketo_id"], {"title": "Marketo's title"})
    world.admin.dynamics.edit("lead", collided["dynamics_id"], {"jobtitle": "Dynamics' title"})
    world.admin.marketo.edit("person", contact["marketo_id"], {"title": "Marketo's contact title"})
    world.admin.dynamics.edit("contact", contact["dynamics_id"], {"jobtitle": "Dynamics' contact title"})
    world.pipeline.configs["target-merge"]["dry_run"] = True
    world.sync()
    world.sync()
    world.pipeline.configs["target-merge"]["dry_run"] = False
    world.sync()
    log = [json.loads(line) for line in mktdyn(world, "activity", "--all", "--format", "jsonl").splitlines()]
    real = [json.loads(line) for line in mktdyn(world, "activity", "--format", "jsonl").splitlines()]  # last merge
    return {"updated": updated, "collided": collided, "contact": contact, "log": log, "real": real}


def test_dry_runs_are_never_posted_to_marketo(world: World, dry_then_real: dict[str, Any]) -> None:
    person = dry_then_real["updated"]["marketo_id"]
    real = {str(item["activity_id"]) for item in dry_then_real["real"]}
    posted = [a for a in world.marketo_activities(person) if attribute(a, "action") == "updated"]
    assert len(posted) == 1, posted
    assert attribute(posted[0], "activityKey") in real
    log = {str(item["activity_id"]): item for item in dry_then_real["log"]}
    for activity in world.marketo_activities(person):  # nothing a dry run logged reached Marketo
        assert not log[attribute(activity, "activityKey")].get("dry_run"), activity
    updates = [item for item in log.values() if item["person_id"] == person and item["action"] == "updated"]
    assert [item.get("dry_run") for item in updates] == [True, True, False], updates


def test_dry_run_rows_are_marked_in_the_activity_table(world: World, dry_then_real: dict[str, Any]) -> None:
    table = mktdyn(world, "activity", "--all")
    person = dry_then_real["updated"]["marketo_id"]
    mine = [line.split() for line in table.splitlines() if f" {person} " in line and "updated" in line]
    assert [row[1:3] for row in mine] == [["updated", "(dry"], ["updated", "(dry"], ["updated", person]]
    assert all(row[2:4] == ["(dry", "run)"] for row in mine[:2])


def test_collisions_read_old_as_overwritten_and_new_as_the_winner(world: World, dry_then_real: dict[str, Any]) -> None:
    real = [item for item in dry_then_real["real"] if item["action"] == "collision"]
    expected = {
        dry_then_real["collided"]["marketo_id"]: ("to_dynamics", "marketo", "Dynamics' title", "Marketo's title"),
        dry_then_real["contact"]["marketo_id"]: (
            "to_marketo",
            "dynamics",
            "Marketo's contact title",
            "Dynamics' contact title",
        ),
    }
    for person, (direction, winner, old, new) in expected.items():
        [collision] = [item for item in real if item["person_id"] == person]
        assert (collision["direction"], collision["winner"]) == (direction, winner)
        assert collision["fields"] == [{"field": "title", "old": old, "new": new}]
        marketo_value, dynamics_value = (new, old) if winner == "marketo" else (old, new)
        assert (collision["details"]["marketo"], collision["details"]["dynamics"]) == (marketo_value, dynamics_value)
        assert collision["rule"]
        assert collision["details"]["rule"] == collision["rule"]
        [posted] = [a for a in world.marketo_activities(person) if attribute(a, "action") == "collision"]
        assert json.loads(attribute(posted, "fields")) == [{"field": "title", "old": old, "new": new}]
        assert attribute(posted, "direction") == direction
        detail = attribute(posted, "detail")
        assert f"winner: {winner}" in detail
        assert marketo_value in detail
        assert dynamics_value in detail
    # What each system holds afterwards is the winner's value.
    assert world.row("lead", dry_then_real["collided"]["dynamics_id"])["jobtitle"] == "Marketo's title"
    assert world.person(dry_then_real["contact"]["marketo_id"])["title"] == "Dynamics' contact title"


@pytest.fixture(scope="module")
def flagged_existing(world: World, dry_then_real: dict[str, Any]) -> dict[str, Any]:
    """A lead that already exists and a person flagged for a Dynamics lead, with the same email."""
    lead = world.dynamics.create(
        "leads",
        {
            "emailaddress1": FLAGGED_EMAIL,
            "subject": "Met at a fair",
            "firstname": "Dora",
            "lastname": "Keeper",
            "jobtitle": "Pigeon keeper",
        },
    )["leadid"]
    (person,) = world.marketo.sync_leads(
        "createOnly",
        [
            {
                "email": FLAGGED_EMAIL,
                "firstName": "Dorothy",
                "lastName": "Keeper",
                "title": "Pigeon keeper",
                "phone": "+1 555 0100",
                "syncToDynamics": True,
            }
        ],
        "email",
    )
    world.sync()
    person_id = str(person.id)
    last_merge = [json.loads(line) for line in mktdyn(world, "activity", "--format", "jsonl").splitlines()]
    log = [a for a in last_merge if a["person_id"] == person_id]
    return {"lead": lead, "person": person_id, "log": log}


def test_a_flagged_person_fills_blanks_of_an_existing_lead_and_keeps_its_values(
    world: World, flagged_existing: dict[str, Any]
) -> None:
    row, person = world.row("lead", flagged_existing["lead"]), world.person(flagged_existing["person"])
    assert row["firstname"] == "Dora"  # the lead's own name is not overwritten
    assert person["firstName"] == "Dorothy"
    assert row["telephone1"] == "+1 555 0100"  # its blank is filled
    assert [p["dynamics_id"] for p in world.pairs() if p["marketo_id"] == flagged_existing["person"]] == [
        flagged_existing["lead"]
    ]
    [linked] = [a for a in flagged_existing["log"] if a["action"] == "linked"]
    assert linked["details"]["kept_differences"] == [
        {"field": "firstName", "column": "firstname", "marketo": "Dorothy", "dynamics": "Dora"}
    ]
    assert "firstName: Marketo 'Dorothy', Dynamics 'Dora'" in linked["rule"]
    assert not [a for a in flagged_existing["log"] if a["action"] == "collision" and a["fields"][0]["field"] != "phone"]


def test_after_the_create_path_link_later_edits_flow_both_ways(world: World, flagged_existing: dict[str, Any]) -> None:
    world.admin.dynamics.edit("lead", flagged_existing["lead"], {"firstname": "Dot"})
    world.admin.marketo.edit("person", flagged_existing["person"], {"lastName": "Keeperson"})
    world.sync()
    assert world.person(flagged_existing["person"])["firstName"] == "Dot"
    assert world.row("lead", flagged_existing["lead"])["lastname"] == "Keeperson"


DESCRIPTION = re.compile(
    r"^When a (?P<deleted>Marketo person|Dynamics lead or contact) is deleted, what happens to its paired "
    r"(?P<acted_on>Marketo person|Dynamics lead or contact): .*flag \(the .*'s (?P<flag_setting>\w+) field is set "
    r"to true\)"
)


@pytest.mark.parametrize("setting", ["delete_from_dynamics", "delete_from_marketo"])
def test_each_delete_setting_acts_on_the_side_its_description_names(
    world: World, flagged_existing: dict[str, Any], setting: str
) -> None:
    """Configured from its description alone (``--about``), the setting flags the side the description names."""
    about = subprocess.run(
        [str(BIN / "target-mktdyn-merge"), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    settings = json.loads(about.stdout)["settings"]["properties"]
    described = DESCRIPTION.match(settings[setting]["description"])
    assert described, settings[setting]["description"]
    assert settings[setting]["title"] == f"When a {described['deleted']} is deleted"
    flag_field = settings[described["flag_setting"]]["default"]
    others = {"delete_from_dynamics", "delete_from_marketo"} - {setting}
    world.pipeline.configs["target-merge"].update({setting: "flag", **dict.fromkeys(others, "ignore")})
    pair = next(p for p in world.in_sync("lead") if p["marketo_id"] != flagged_existing["person"])
    if described["deleted"] == "Marketo person":
        world.admin.marketo.delete("person", pair["marketo_id"])
    else:
        world.admin.dynamics.delete("lead", pair["dynamics_id"])
    try:
        world.sync()
    finally:
        world.pipeline.configs["target-merge"].update(dict.fromkeys((setting, *others), "ignore"))
    if described["acted_on"] == "Marketo person":
        assert world.person(pair["marketo_id"]).get(flag_field) is True
    else:
        assert world.row("lead", pair["dynamics_id"]).get(flag_field) is True
    assert pair["marketo_id"] not in {p["marketo_id"] for p in world.pairs()}
