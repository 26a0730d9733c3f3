"""The client's writes and reads against a fresh sandbox: outcomes match what the sandbox stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox
from tap_marketo_leads.client import ActivityTypeSpec, MarketoClient
from tap_marketo_leads.connection import MarketoConnection

SPEC = ActivityTypeSpec(
    api_name="mktdynSyncResult",
    name="mktdyn Sync Result",
    description="Outcome of a sync run",
    trigger_name="Has mktdyn Sync Result",
    filter_name="Had mktdyn Sync Result",
    primary_attribute=("syncRunId", "Sync Run Id"),
    attributes=(("outcome", "Outcome", "string"), ("changedFields", "Changed Fields", "text")),
)


def stored(admin: SandboxAdmin, person_id: int) -> dict[str, Any]:
    record = admin.marketo.record("person", person_id)
    assert record is not None, f"person {person_id} is not stored"
    return record


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(persons=40)


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[SandboxAdmin]:
    admin = SandboxAdmin(sandbox.info)
    yield admin
    admin.close()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[MarketoClient]:
    info = sandbox.info
    connection = MarketoConnection.from_config(
        {
            "marketo_base_url": info["marketo_url"] + "/identity/",
            "marketo_client_id": info["marketo_client_id"],
            "marketo_client_secret": info["marketo_client_secret"],
            "marketo_ca_bundle": info["ca_bundle"],
        },
        prefix="marketo_",
    )
    with MarketoClient(connection) as client:
        yield client


def test_update_only_outcomes_match_the_stored_persons(client: MarketoClient, admin: SandboxAdmin) -> None:
    outcomes = client.sync_leads(
        "updateOnly",
        [{"id": 3, "firstName": "Grace"}, {"id": 999_999, "firstName": "X"}, {"id": 4, "title": "Chief Sync Officer"}],
        "id",
    )
    assert [(o.index, o.status, o.id) for o in outcomes] == [(0, "updated", 3), (1, "skipped", None), (2, "updated", 4)]
    assert outcomes[1].reasons[0][0] == "1004"
    assert stored(admin, 3)["firstName"] == "Grace"
    assert stored(admin, 4)["title"] == "Chief Sync Officer"


def test_create_only_creates_new_and_skips_existing(client: MarketoClient, admin: SandboxAdmin) -> None:
    existing = stored(admin, 1)["email"]
    outcomes = client.sync_leads(
        "createOnly",
        [{"email": "new.person+crm@example.com", "firstName": "Nova"}, {"email": existing, "firstName": "Dup"}],
        "email",
    )
    created, skipped = outcomes
    assert created.status == "created"
    assert created.id is not None
    assert stored(admin, created.id)["email"] == "new.person+crm@example.com"
    assert skipped.status == "skipped"
    assert skipped.reasons[0][0] == "1005"
    assert stored(admin, 1)["firstName"] != "Dup"
    assert [lead["id"] for lead in client.get_leads("email", ["new.person+crm@example.com"], ["firstName"])] == [
        created.id
    ]


def test_delete_leads(client: MarketoClient, admin: SandboxAdmin) -> None:
    outcomes = client.delete_leads([7, 999_999])
    assert outcomes[0].status == "deleted"
    assert outcomes[1].status == "skipped"
    assert admin.marketo.record("person", 7) is None
    token = client.get_paging_token(datetime.now(UTC) - timedelta(minutes=5))
    deleted = [item["leadId"] for page in client.deleted_leads(token) for item in page.items]
    assert deleted == [7]


def test_custom_activities_type_and_outcomes(client: MarketoClient) -> None:
    type_id = client.ensure_activity_type(SPEC)
    assert client.ensure_activity_type(SPEC) == type_id  # idempotent
    described = client.describe_custom_activity_type(SPEC.api_name)
    assert described["status"] == "approved"
    assert {a["apiName"] for a in described["attributes"]} == {"outcome", "changedFields"}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = [
        {
            "leadId": lead_id,
            "activityDate": now,
            "activityTypeId": type_id,
            "primaryAttributeValue": "run-1",
            "attributes": [{"apiName": "outcome", "value": "updated"}],
        }
        for lead_id in (2, 999_999)
    ]
    added, skipped = client.add_activities(items)
    assert added.status == "added"
    assert added.marketo_guid
    assert skipped.status == "skipped"
    assert skipped.reasons[0][0] == "1004"
    found = list(client.get_activities([type_id], datetime.now(UTC) - timedelta(minutes=5), lead_ids=[2]))
    assert [a["leadId"] for a in found] == [2]
    assert client.calls["write"] == 1
    assert client.calls["auth"] == 1
