"""The client against the sandbox: writes, conditional updates, $batch outcomes, literals, metadata, 429s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mktdyn_sandbox.admin_client import SandboxAdmin
from tap_dynamics_leads.batch import BatchOperation
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import NotFoundError, PreconditionFailedError

from tests.tap_dynamics.helpers import tap_config

SELECT = ["leadid", "lastname", "firstname", "emailaddress1", "subject", "modifiedon"]


@pytest.fixture(params=["client_credentials", "password"])
def client(request: pytest.FixtureRequest, sandbox_info: dict[str, Any]) -> Iterator[DataverseClient]:
    with DataverseClient(DataverseConnection.from_config(tap_config(sandbox_info, request.param))) as made:
        yield made


def stored(admin: SandboxAdmin, entity: str, row_id: str) -> dict[str, Any]:
    record = admin.dynamics.record(entity, row_id)
    assert record is not None
    return record


def test_create_and_conditional_update_match_what_was_stored(
    client: DataverseClient, sandbox_admin: SandboxAdmin
) -> None:
    created = client.create(
        "leads", {"lastname": "Writer", "subject": "Client test", "emailaddress1": "writer@example.com"}, select=SELECT
    )
    lead_id = created["leadid"]
    assert stored(sandbox_admin, "lead", lead_id)["lastname"] == "Writer"
    assert created["@odata.etag"].startswith('W/"')

    updated = client.update("leads", lead_id, {"firstname": "Ada"}, etag=created["@odata.etag"], select=SELECT)
    assert updated["firstname"] == "Ada"
    assert updated["@odata.etag"] != created["@odata.etag"]
    assert stored(sandbox_admin, "lead", lead_id)["firstname"] == "Ada"

    with pytest.raises(PreconditionFailedError, match="HTTP 412"):
        client.update("leads", lead_id, {"firstname": "Stale"}, etag=created["@odata.etag"])
    assert stored(sandbox_admin, "lead", lead_id)["firstname"] == "Ada"
    current = client.get("leads", lead_id, SELECT)
    assert current is not None
    assert current["@odata.etag"] == updated["@odata.etag"]

    assert client.delete("leads", lead_id) is True
    assert client.get("leads", lead_id, SELECT) is None
    assert client.delete("leads", lead_id) is False
    with pytest.raises(NotFoundError):
        client.update("leads", lead_id, {"firstname": "Gone"})
    assert client.calls["write"] >= 5
    assert client.calls["read"] >= 2


def test_batch_reports_each_outcome_as_stored(client: DataverseClient, sandbox_admin: SandboxAdmin) -> None:
    target = client.create("leads", {"lastname": "Batch target", "subject": "x"}, select=SELECT)
    results = client.batch(
        [
            BatchOperation.create("leads", {"lastname": "Batch one", "subject": "b"}, select=SELECT),
            BatchOperation.create("leads", {"lastname": "L" * 80, "subject": "too long"}),
            BatchOperation.update(
                "leads", target["leadid"], {"firstname": "Batched"}, etag=target["@odata.etag"], select=SELECT
            ),
            BatchOperation.update("leads", target["leadid"], {"firstname": "Stale"}, etag=target["@odata.etag"]),
        ]
    )
    assert [result.ok for result in results] == [True, False, True, False]
    created = results[0].body
    assert created is not None
    assert stored(sandbox_admin, "lead", created["leadid"])["lastname"] == "Batch one"
    assert results[1].status == 400
    assert results[1].error_code
    assert "lastname" in (results[1].error_message or "")
    assert results[2].etag
    assert stored(sandbox_admin, "lead", target["leadid"])["firstname"] == "Batched"
    assert results[3].status == 412
    assert client.calls["write"] == 2  # one create, one $batch


def test_email_with_quotes_and_odata_syntax_is_one_literal(client: DataverseClient) -> None:
    tricky = f"o'brien' or 1 eq 1+{client.connection.auth_flow}@example.com"
    created = client.create("contacts", {"lastname": "O'Brien", "emailaddress1": tricky}, select=["contactid"])
    found = client.find_by_email("contacts", tricky, ["contactid", "emailaddress1"])
    assert [row["contactid"] for row in found] == [created["contactid"]]
    assert client.find_by_email("contacts", "nobody' or emailaddress1 ne 'x", ["contactid"]) == []
    client.delete("contacts", created["contactid"])


def test_find_by_emails_matches_any_of_them_whatever_their_case(client: DataverseClient) -> None:
    email = f"Many.Emails+{client.connection.auth_flow}@Example.com"
    created = client.create("contacts", {"lastname": "Many", "emailaddress1": email}, select=["contactid"])
    found = list(client.find_by_emails("contacts", ["nobody@example.com", email.lower()], ["contactid"]))
    assert [row["contactid"] for row in found] == [created["contactid"]]
    client.delete("contacts", created["contactid"])


def test_metadata_is_typed(client: DataverseClient) -> None:
    lead = client.entity_definition("lead")
    assert (lead.entity_set_name, lead.primary_id) == ("leads", "leadid")
    attributes = {a.logical_name: a for a in client.attributes("lead")}
    assert attributes["lastname"].max_length == 50
    assert attributes["lastname"].required_level == "ApplicationRequired"
    assert {o.value: o.state for o in attributes["statuscode"].options}[3] == 1
    assert attributes["leadsourcecode"].option_values[:3] == (1, 2, 3)
    assert attributes["parentcontactid"].targets == ("contact",)
    assert attributes["modifiedon"].valid_for_update is False
    assert attributes["new_synctomkto"].is_custom
    assert set(attributes["new_synctomkto"].option_values) == {0, 1}
    metadata_calls = client.calls["metadata"]
    client.attributes("lead")
    assert client.calls["metadata"] == metadata_calls  # cached


def test_429_retry_after_is_honoured(make_sandbox: Any) -> None:
    sandbox = make_sandbox(persons=20, dynamics_only=5, faults="dynamics.429=0.5")
    waits: list[tuple[float, float]] = []
    advertised: list[float] = []

    def sleep(seconds: float) -> None:
        started = time.monotonic()
        time.sleep(seconds)
        waits.append((seconds, time.monotonic() - started))

    connection = DataverseConnection.from_config(tap_config(sandbox.info, page_size=5))
    with DataverseClient(connection, sleep=sleep) as client:

        def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if response.status_code == 429:
                advertised.append(float(response.headers["Retry-After"]))

        client._session._http.hooks["response"].append(remember)  # observe the wire, not the client's code
        rows = list(client.query("leads", ["leadid"]))
    assert rows
    assert advertised, "no 429 was injected"
    assert len(waits) == len(advertised)
    for (asked, slept), retry_after in zip(waits, advertised, strict=True):
        assert asked == retry_after
        assert slept >= retry_after


def test_qualify_lead_creates_the_contact(client: DataverseClient, sandbox_admin: SandboxAdmin) -> None:
    lead = client.create("leads", {"lastname": "Qualified", "subject": "q", "emailaddress1": "q@example.com"})
    created = client.qualify_lead(lead["leadid"])
    contact_ids = [item["contactid"] for item in created if "contactid" in item]
    assert len(contact_ids) == 1
    contact = client.get("contacts", contact_ids[0], ["contactid", "_originatingleadid_value", "emailaddress1"])
    assert contact is not None
    assert contact["_originatingleadid_value"] == lead["leadid"]
    assert stored(sandbox_admin, "lead", lead["leadid"])["statecode"] == 1


def test_one_msal_application_per_process_and_refresh_after_server_side_expiry(make_sandbox: Any) -> None:
    sandbox = make_sandbox(persons=10, dynamics_only=2)
    connection = DataverseConnection.from_config(tap_config(sandbox.info))
    with DataverseClient(connection) as first, DataverseClient(connection) as second:
        assert list(first.query("leads", ["leadid"]))
        assert list(second.query("leads", ["leadid"]))
        assert (first.calls["auth"], second.calls["auth"]) == (1, 0)  # the second reused msal's cached token
        # The server's clock passes the token's expiry while ours does not: one 401, one fresh token.
        admin = SandboxAdmin(sandbox.info)
        admin.dynamics.advance_clock(2 * 3600)
        admin.close()
        assert list(first.query("leads", ["leadid"]))
        assert first.calls["auth"] == 2
