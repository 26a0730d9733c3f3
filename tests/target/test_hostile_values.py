"""Hostile values bound for the systems, end to end through the real plugin CLIs and the sandbox (issue 11).

One job run carries three kinds of hostile value at once:

- Dynamics rows (a lead and a contact) whose email is not ASCII, which the sync would create in Marketo:
  Marketo refuses non-ASCII emails, so nothing is sent and each is a ``validation_failed`` naming ``email``;
- a Marketo person whose ``address`` became 10 KB of text, bound for ``address1_line1`` (MaxLength 250): not
  sent, a ``validation_failed`` naming the column and the limit;
- unicode (emoji, CJK, RTL with bidi marks, decomposed combining characters) in every mapped text field of
  another person (edited in Marketo) and of a contact (edited in Dynamics): it reaches the other side exactly,
  code point for code point, and comes back without a write (no ping-pong on a normalization difference).

The run exits 0 (record-level failures up to ``max_record_failures`` are outcomes, not errors; here exactly at
the limit), its report counts the failures, and nothing else is lost: the other records sync, the failed ones
are not written half-way, and the next runs converge.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.target.pipeline import BIN
from tests.target.worlds import World

#: Unicode for each mapped text field, within each side's length limits (counted in UTF-16 units).
UNICODE_PERSON = {
    "firstName": "Zoe\u0308 🙂",  # decomposed ë: must not be composed (NFC) on the way
    "lastName": "\u05e9\u05dc\u05d5\u05dd\u200f O'Brien",  # Hebrew with a right-to-left mark
    "title": "Директор 🚀 データ",
    # Arabic ("Nile Street") inside a right-to-left embedding
    "address": "Straße 5, \u202b\u0634\u0627\u0631\u0639 \u0627\u0644\u0646\u064a\u0644\u202c 🏠",
    "city": "Zu\u0308rich",
    "state": "北京市",
    "postalCode": "〒100-0001",
    "country": "Ελλάδα 🇬🇷",
}
#: The same kind of values written in Dynamics, bound for Marketo.
UNICODE_CONTACT = {
    "firstname": "Ærøskøbing 🐟",
    "lastname": "ꯃꯅꯤꯄꯨꯔ \u202eevil\u202c",  # a right-to-left override, kept as data
    "jobtitle": "首席 🤖 offi\u0301cer",
    "address1_line1": "ул. Пушкина, д. 1 🏚",
    "address1_city": "\u0627\u0644\u0642\u0627\u0647\u0631\u0629",
    "address1_stateorprovince": "ශ්‍රී ලංකා",  # zero-width joiner inside
    "address1_postalcode": "١٢٣٤٥",
    "address1_country": "日本 🗾",
}
MAPPED_COLUMN = {
    "firstName": "firstname",
    "lastName": "lastname",
    "title": "jobtitle",
    "address": "address1_line1",
    "city": "address1_city",
    "state": "address1_stateorprovince",
    "postalCode": "address1_postalcode",
    "country": "address1_country",
}
HUGE_ADDRESS = ("Lange Straße 1, " * 700)[:10_239] + "."  # 10 KB, no edge whitespace for the merge to trim
FAILURES = 3  # the non-ASCII lead and contact, the 10 KB address


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(tmp_path_factory.mktemp("hostile"), {"max_record_failures": FAILURES}, persons=30, dynamics_only=2)
    world.sync()
    yield world
    world.close()


@pytest.fixture(scope="module")
def hostile(world: World) -> dict[str, Any]:
    """Users put hostile values in both systems; then the job runs once."""
    leads, contacts = world.in_sync("lead"), world.in_sync("contact")
    assert len(leads) >= 3, "the seed must give linked, in-sync leads"
    assert contacts, "the seed must give linked, in-sync contacts"
    huge, unicode_person, control = leads[:3]
    unicode_contact = contacts[0]
    synced = {"new_synctomkto": True}  # the sync filter column: Dataverse creates rows with it false
    lead = world.dynamics.create(
        "leads", {"lastname": "Müller", "subject": "hostile email", "emailaddress1": "jörg@exämple.de", **synced}
    )
    contact = world.dynamics.create("contacts", {"lastname": "Ñandú", "emailaddress1": "ñandú@exämple.es", **synced})
    world.admin.marketo.edit("person", huge["marketo_id"], {"address": HUGE_ADDRESS})
    world.admin.marketo.edit("person", unicode_person["marketo_id"], UNICODE_PERSON)
    world.admin.marketo.edit("person", control["marketo_id"], {"title": "Plain control title"})
    world.admin.dynamics.edit("contact", unicode_contact["dynamics_id"], UNICODE_CONTACT)
    result = world.sync()
    return {
        "result": result,
        "lead": lead["leadid"],
        "contact": contact["contactid"],
        "huge": huge,
        "unicode_person": unicode_person,
        "unicode_contact": unicode_contact,
        "control": control,
        "huge_row_before": world.row("lead", huge["dynamics_id"]),
    }


def mktdyn(world: World, *args: str) -> str:
    """What the ``mktdyn`` utility prints for the world's store."""
    result = subprocess.run(
        [str(BIN / "mktdyn"), "--store-url", world.pipeline.store_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def activity_log(world: World) -> list[dict[str, Any]]:
    """The last merge's activity log, through ``mktdyn activity --format jsonl`` as a user reads it."""
    return [json.loads(line) for line in mktdyn(world, "activity", "--format", "jsonl").splitlines()]


def failures_of(log: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    return [
        item
        for item in log
        if item["action"] == "validation_failed" and all(item[key] == value for key, value in where.items())
    ]


def test_the_run_exits_zero_with_its_failures_counted(hostile: dict[str, Any]) -> None:
    result = hostile["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"Failures ({FAILURES}):" in result.stderr  # the run's report


@pytest.mark.parametrize("entity", ["lead", "contact"])
def test_a_non_ascii_email_bound_for_marketo_is_a_validation_failure_naming_the_email(
    world: World, hostile: dict[str, Any], entity: str
) -> None:
    log = activity_log(world)
    [failure] = failures_of(log, entity=entity, dynamics_id=hostile[entity])
    assert failure["direction"] == "to_marketo"
    assert failure["rule"] == "email: ascii_email"
    assert failure["error_code"] == "ascii_email"
    assert "email:" in failure["error_message"]
    assert "non-ASCII" in failure["error_message"]
    assert [change["field"] for change in failure["fields"]] == ["email"]
    email = "jörg@exämple.de" if entity == "lead" else "ñandú@exämple.es"
    assert failure["fields"][0]["new"] == email
    assert not list(world.marketo.get_leads("email", [email], ["id"]))  # Marketo never saw it


def test_a_10_kb_value_bound_for_dynamics_is_a_validation_failure_naming_the_column_and_limit(
    world: World, hostile: dict[str, Any]
) -> None:
    pair = hostile["huge"]
    log = activity_log(world)
    [failure] = failures_of(log, person_id=pair["marketo_id"])
    assert (failure["entity"], failure["dynamics_id"], failure["direction"]) == (
        "lead",
        pair["dynamics_id"],
        "to_dynamics",
    )
    assert "address1_line1: max_length" in failure["rule"]
    assert "address1_line1: 10240 characters, Dynamics allows at most 250 (MaxLength)" in failure["error_message"]
    # Held back whole: the row is as it was, not truncated, and the pair is still linked.
    row = world.row("lead", pair["dynamics_id"])
    assert row["address1_line1"] == hostile["huge_row_before"]["address1_line1"]
    assert row["address1_line1"] != HUGE_ADDRESS[:250]
    assert pair["marketo_id"] in {p["marketo_id"] for p in world.pairs()}
    posted = world.marketo_activities(pair["marketo_id"])  # and it shows in the person's activity log
    actions = [next(a["value"] for a in p["attributes"] if a.get("apiName", a.get("name")) == "action") for p in posted]
    assert "validation_failed" in actions


def test_exactly_the_three_hostile_records_failed(world: World, hostile: dict[str, Any]) -> None:
    failed = failures_of(activity_log(world))
    assert len(failed) == FAILURES, failed
    assert not [item for item in activity_log(world) if item["action"] == "write_failed"]


def test_unicode_in_every_mapped_field_reaches_dynamics_exactly(world: World, hostile: dict[str, Any]) -> None:
    pair = hostile["unicode_person"]
    row = world.row("lead", pair["dynamics_id"])
    assert {MAPPED_COLUMN[name]: row[MAPPED_COLUMN[name]] for name in UNICODE_PERSON} == {
        MAPPED_COLUMN[name]: value for name, value in UNICODE_PERSON.items()
    }


def test_unicode_in_every_mapped_column_reaches_marketo_exactly(world: World, hostile: dict[str, Any]) -> None:
    pair = hostile["unicode_contact"]
    person = world.person(pair["marketo_id"])
    by_column = {column: name for name, column in MAPPED_COLUMN.items()}
    assert {by_column[column]: person[by_column[column]] for column in UNICODE_CONTACT} == {
        by_column[column]: value for column, value in UNICODE_CONTACT.items()
    }


def test_the_other_records_synced(world: World, hostile: dict[str, Any]) -> None:
    pair = hostile["control"]
    assert world.row("lead", pair["dynamics_id"])["jobtitle"] == "Plain control title"


def test_then_the_job_converges_without_ping_pong(world: World, hostile: dict[str, Any]) -> None:
    """What the run wrote comes back once through extraction; after that no run writes anything."""
    runs = world.settle(max_runs=3)
    assert runs <= 2, runs
    row = world.row("lead", hostile["unicode_person"]["dynamics_id"])
    assert row["firstname"] == UNICODE_PERSON["firstName"]
    person = world.person(hostile["unicode_contact"]["marketo_id"])
    assert person["firstName"] == UNICODE_CONTACT["firstname"]
    # The failed writes are still owed (retried when their inputs change), never sent in part meanwhile.
    status = mktdyn(world, "status")
    assert "1 dynamics update (invalid)" in status, status
    assert "2 marketo create (invalid)" in status, status
    assert world.row("lead", hostile["huge"]["dynamics_id"])["address1_line1"] != HUGE_ADDRESS
