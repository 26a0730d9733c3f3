"""Sync Person to Microsoft through the sandbox's Call Webhook step, answered by a running `mktdyn serve`."""

from __future__ import annotations

from tests.realtime.harness import Realtime


def test_a_new_person_triggered_gets_exactly_one_lead_mapped_back_and_logged(realtime: Realtime) -> None:
    person = realtime.new_person("ada.realtime@example.com")
    serve = realtime.serve()
    realtime.define_webhook(serve)
    [outcome] = realtime.trigger([person])
    assert outcome["status"] == 200, (outcome, serve.log.read_text()[-3000:])
    leads = realtime.leads_with("ada.realtime@example.com")
    assert len(leads) == 1
    lead_id = leads[0]["leadid"]
    assert outcome["mapped"] == {"dynamicsLeadId": lead_id}
    assert realtime.person(person)["dynamicsLeadId"] == lead_id
    actions = [(a["action"], a["direction"], a["dynamics_id"]) for a in realtime.activities(person)]
    assert ("created", "to_dynamics", lead_id) in actions
