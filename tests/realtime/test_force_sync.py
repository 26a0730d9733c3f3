"""`mktdyn sync --person` and the authenticated POST /sync/person: a two-way merge of one person now."""

from __future__ import annotations

import json

import requests

from tests.realtime.harness import HEADER, SECRET, Realtime, Serve


def test_one_person_is_merged_both_ways_now_by_the_batch_rules(realtime: Realtime, served: Serve) -> None:
    person = realtime.new_person("force.sync@example.com", first="Katherine", last="Johnson")
    [outcome] = realtime.trigger([person])  # the lead exists and is linked; the pair has not been merged yet
    lead_id = outcome["mapped"]["dynamicsLeadId"]
    config = realtime.config_file()
    # An edit on each side, then the CLI: both flow, by the batch's rules, with nothing else running.
    realtime.admin.marketo.edit("person", person, {"title": "Research mathematician"})
    realtime.admin.dynamics.edit("lead", lead_id, {"telephone1": "+1 555 0100"})
    result = realtime.mktdyn("sync", "--person", str(person), config=config)
    answer = json.loads(result.stdout)
    assert (answer["status"], answer["dynamicsLeadId"], answer["dryRun"]) == ("synced", lead_id, False)
    assert realtime.lead(lead_id)["jobtitle"] == "Research mathematician"
    assert realtime.person(person)["phone"] == "+1 555 0100"
    # The endpoint does the same for the next edit, behind the same secret.
    realtime.admin.marketo.edit("person", person, {"title": "Flight engineer"})
    url = f"{served.url}/sync/person"
    assert requests.post(url, json={"personId": person}, timeout=30).status_code == 401
    synced = requests.post(url, json={"personId": person}, headers={HEADER: SECRET}, timeout=30)
    assert (synced.status_code, synced.json()["status"]) == (200, "synced")
    assert realtime.lead(lead_id)["jobtitle"] == "Flight engineer"
    updated = [a for a in realtime.activities(person) if a["action"] == "updated"]
    assert {a["direction"] for a in updated} == {"to_dynamics", "to_marketo"}
    verify = realtime.mktdyn("verify", "--person", str(person), config=config, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_unknown_person_is_a_404_and_a_dry_run_changes_nothing(realtime: Realtime, served: Serve) -> None:
    missing = requests.post(f"{served.url}/sync/person", json={"personId": 987654}, headers={HEADER: SECRET})
    assert (missing.status_code, missing.json()["status"]) == (404, "not_found")
    person = realtime.new_person("force.dry@example.com")
    dry = realtime.mktdyn("sync", "--person", str(person), "--create-only", "--dry-run", config=realtime.config_file())
    assert json.loads(dry.stdout)["status"] == "would_create"
    assert realtime.leads_with("force.dry@example.com") == []
