"""Sync Person to Microsoft through the sandbox's Call Webhook step, answered by a running `mktdyn serve`.

Each test creates its own persons (unique emails) in one small sandbox and ends by reading both systems back.
"""

from __future__ import annotations

from pathlib import Path

import requests

from tests.realtime.harness import HEADER, SECRET, TEMPLATE, Realtime, Serve
from tests.store_backends import fresh_store_url


def test_a_new_person_triggered_gets_exactly_one_lead_mapped_back_and_logged(realtime: Realtime, served: Serve) -> None:
    person = realtime.new_person("ada.realtime@example.com", first="Ada", last="Lovelace")
    [outcome] = realtime.trigger([person])
    assert outcome["status"] == 200, (outcome, served.log.read_text()[-3000:])
    [lead] = realtime.leads_with("ada.realtime@example.com")
    lead_id = lead["leadid"]
    # The batch's create: its subject template, its payload, and the response mapping stores the id.
    assert lead["subject"] == "Marketo person Ada Lovelace"
    assert lead["lastname"] == "Lovelace"
    assert outcome["mapped"] == {"dynamicsLeadId": lead_id}
    assert realtime.person(person)["dynamicsLeadId"] == lead_id
    created = [a for a in realtime.activities(person) if a["action"] == "created"]
    assert [(a["direction"], a["dynamics_id"], a["posted_to_marketo"]) for a in created] == [
        ("to_dynamics", lead_id, True)
    ]
    assert "Sync Person to Microsoft" in created[0]["rule"]
    # Triggered again (Marketo retries, a second campaign): the same lead, nothing created.
    [again] = realtime.trigger([person])
    assert (again["status"], again["mapped"]) == (200, {"dynamicsLeadId": lead_id})
    assert len(realtime.leads_with("ada.realtime@example.com")) == 1


def test_an_existing_lead_is_left_untouched_linked_and_the_activity_says_why(realtime: Realtime, served: Serve) -> None:
    lead_id = realtime.new_lead("grace.exists@example.com", last="Hopper", subject="From a trade show")
    before = realtime.leads_with("grace.exists@example.com")
    person = realtime.new_person("grace.exists@example.com", first="Grace", last="Hopper-Marketo")
    [outcome] = realtime.trigger([person])
    assert (outcome["status"], outcome["mapped"]) == (200, {"dynamicsLeadId": lead_id})
    assert realtime.leads_with("grace.exists@example.com") == before  # same values, same modifiedon
    [unchanged] = [a for a in realtime.activities(person) if a["action"] == "unchanged"]
    assert unchanged["dynamics_id"] == lead_id
    assert "already exists, so nothing was changed" in unchanged["rule"]
    # The pair's first merge (here forced now; else the next batch run) is the create path's: the lead's last
    # name is kept and reported, not overwritten by Marketo's (a lead's authority), and its blanks are filled.
    synced = requests.post(f"{served.url}/sync/person", json={"personId": person}, headers={HEADER: SECRET})
    assert synced.json()["status"] == "synced"
    after = realtime.lead(lead_id)
    assert after["lastname"] == "Hopper"
    linked = [a for a in realtime.activities(person) if a["action"] == "linked"]
    assert any("differences kept, not overwritten" in (a["rule"] or "") for a in linked), linked


def test_a_dry_run_writes_nothing_to_either_system(realtime: Realtime, served: Serve) -> None:
    """A webhook whose template asks for a dry run (the target's ``dry_run`` setting makes every request one)."""
    person = realtime.new_person("dry.run@example.com")
    template = TEMPLATE[:-1] + ', "dryRun": true}'
    realtime.define_webhook(served, template=template, name="Sync Person (dry run)")
    [outcome] = realtime.trigger([person], name="Sync Person (dry run)")
    assert (outcome["status"], outcome["mapped"]) == (200, {})
    assert realtime.leads_with("dry.run@example.com") == []
    assert realtime.person(person).get("dynamicsLeadId") is None
    logged = realtime.activities(person)
    assert [(a["action"], a["dry_run"], a["posted_to_marketo"]) for a in logged] == [("created", True, False)]
    answer = requests.post(
        f"{served.url}/webhook/sync-person", json={"personId": person, "dryRun": True}, headers={HEADER: SECRET}
    )
    assert (answer.json()["status"], answer.json()["dryRun"], answer.json()["dynamicsId"]) == (
        "would_create",
        True,
        None,
    )
    assert realtime.leads_with("dry.run@example.com") == []


def test_a_wrong_secret_is_refused_401_and_nothing_is_queued(realtime: Realtime, served: Serve) -> None:
    person = realtime.new_person("wrong.secret@example.com")
    realtime.define_webhook(served, secret="not-the-secret-at-all", name="Wrong secret")
    [outcome] = realtime.trigger([person], name="Wrong secret")
    assert (outcome["status"], outcome["mapped"]) == (401, {})
    no_header = requests.post(f"{served.url}/webhook/sync-person", json={"personId": person}, timeout=10)
    assert no_header.status_code == 401
    assert "X-Mktdyn-Secret" in no_header.json()["error"]
    assert realtime.queued(person) == []
    assert realtime.leads_with("wrong.secret@example.com") == []
    assert SECRET not in served.log.read_text()


def test_a_bad_payload_is_refused_400_naming_the_field_and_nothing_is_queued(realtime: Realtime, served: Serve) -> None:
    person = realtime.new_person("bad.payload@example.com")
    realtime.define_webhook(served, template='{"email": {{lead.Email Address}}}', name="No person id")
    [outcome] = realtime.trigger([person], name="No person id")
    assert outcome["status"] == 400
    url, headers = f"{served.url}/webhook/sync-person", {HEADER: SECRET}
    cases = {
        b'{"email": "x@example.com"}': "field 'personId': required",
        b'{"personId": "abc"}': "field 'personId': must be a positive integer",
        b'{"personId": 7, "dryRun": "yes"}': "field 'dryRun'",
        b"[7]": "body: must be a JSON object",
        b"personId=7": "body: not JSON",
    }
    for raw, expected in cases.items():
        answer = requests.post(url, data=raw, headers=headers, timeout=10)
        assert answer.status_code == 400, raw
        assert expected in answer.json()["error"], (raw, answer.text)
    assert realtime.queued(person) == []
    assert realtime.leads_with("bad.payload@example.com") == []


def test_health_and_readiness(served: Serve) -> None:
    assert requests.get(f"{served.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{served.url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()["status"], ready.json()["queued"]) == (200, "ready", 0)


def test_the_service_on_a_postgresql_store(realtime: Realtime, tmp_path: Path) -> None:
    """The queue and the write lock (an advisory lock there) on PostgreSQL, the store teams share."""
    with fresh_store_url("postgresql", tmp_path) as url:
        world = Realtime(realtime.info, tmp_path / "pg", store_url=url)
        try:
            person = world.new_person("postgres.store@example.com")
            serve = world.serve()
            world.define_webhook(serve, name="On PostgreSQL")
            outcomes = world.trigger([person, person], name="On PostgreSQL")  # delivered twice
            [lead] = world.leads_with("postgres.store@example.com")
            assert [(o["status"], o["mapped"]) for o in outcomes] == [(200, {"dynamicsLeadId": lead["leadid"]})] * 2
            assert [r["status"] for r in world.queued(person)] == ["done", "done"]
        finally:
            world.close()
