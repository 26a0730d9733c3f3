"""marketorestpython, unchanged apart from its host and CA, against the sandbox's Marketo API."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketorestpython.client import MarketoClient
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from mktdyn_sandbox.testing import SESSION_SEED


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sandbox = Sandbox(
        SandboxOptions(
            directory=tmp_path_factory.mktemp("marketo-client"), limits=False, export_delay=0.05, **SESSION_SEED
        )
    )
    yield sandbox.start()
    sandbox.stop()


def client_for(info: dict[str, Any], monkeypatch: pytest.MonkeyPatch, secret: str | None = None) -> MarketoClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
    client = MarketoClient(
        "123-ABC-456", info["marketo_client_id"], secret or info["marketo_client_secret"], max_retry_time=10
    )
    client.host = info["marketo_url"]
    return client


@pytest.fixture
def mc(info: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> MarketoClient:
    return client_for(info, monkeypatch)


def since_now() -> str:
    return (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_describe_reports_standard_and_custom_fields(mc: MarketoClient) -> None:
    fields = {item["rest"]["name"]: item for item in mc.execute(method="describe")}
    assert fields["email"]["dataType"] == "email"
    assert (fields["email"]["id"], fields["email"]["length"]) == (56, 255)
    assert fields["createdAt"]["rest"]["readOnly"] is True
    assert "length" not in fields["leadScore"]
    assert fields["syncToDynamics"]["dataType"] == "boolean"
    assert fields["deletedInDynamics"]["dataType"] == "boolean"
    assert (fields["dynamicsLeadId"]["dataType"], fields["dynamicsLeadId"]["length"]) == ("string", 36)
    assert fields["dynamicsContactId"]["length"] == 36
    expected_types = {
        "string",
        "text",
        "url",
        "currency",
        "integer",
        "boolean",
        "email",
        "phone",
        "reference",
        "date",
        "datetime",
        "float",
    }
    assert expected_types <= {item["dataType"] for item in fields.values()}
    ids = [item["id"] for item in fields.values()]
    assert len(ids) == len(set(ids))
    searchable = mc.execute(method="describe2")[0]["searchableFields"]
    assert ["email"] in searchable
    assert ["dynamicsLeadId"] in searchable


def test_leads_by_filter_page_through_every_match(mc: MarketoClient) -> None:
    ids = [str(i) for i in range(1, 36)]
    leads = mc.execute(
        method="get_multiple_leads_by_filter_type",
        filterType="id",
        filterValues=ids,
        fields=["email", "firstName", "syncToDynamics"],
        batchSize=10,
    )
    assert [lead["id"] for lead in leads] == list(range(1, 36))
    assert all(set(lead) == {"id", "email", "firstName", "syncToDynamics"} for lead in leads)
    by_email = mc.execute(
        method="get_multiple_leads_by_filter_type", filterType="email", filterValues=[leads[4]["email"].upper()]
    )
    assert leads[4]["id"] in [lead["id"] for lead in by_email]
    assert set(by_email[0]) <= {"id", "email", "updatedAt", "createdAt", "firstName", "lastName"}
    assert (
        mc.execute(
            method="get_multiple_leads_by_filter_type", filterType="email", filterValues=["nobody@nowhere.example"]
        )
        == []
    )
    assert mc.execute(method="get_lead_by_id", id=7, fields=["email", "title"])[0]["id"] == 7


def test_upsert_shows_in_lead_changes_and_delete_in_deleted_leads(mc: MarketoClient) -> None:
    token = mc.execute(method="get_paging_token", sinceDatetime=since_now())
    before = mc.execute(method="get_lead_by_id", id=5, fields=["email", "title"])[0]
    results = mc.execute(
        method="create_update_leads",
        action="createOrUpdate",
        lookupField="email",
        leads=[
            {"email": "zoe.obrien@example.com", "firstName": "Zoë", "lastName": "O'Brien"},
            {"email": before["email"].upper(), "title": "Chief Sync Officer"},
        ],
    )
    assert results[0]["status"] == "created"
    assert results[1] == {"id": 5, "status": "updated"}
    new_id = results[0]["id"]
    changes = mc.execute(method="get_lead_changes", fields=["title", "firstName"], nextPageToken=token)
    assert any(c["activityTypeId"] == 12 and c["leadId"] == new_id for c in changes)
    title_change = next(c for c in changes if c["activityTypeId"] == 13 and c["leadId"] == 5)
    assert title_change["fields"] == [
        {"id": 51, "name": "title", "newValue": "Chief Sync Officer", "oldValue": before["title"]}
    ]
    assert {"name": "Source", "value": "Web service API"} in title_change["attributes"]
    assert title_change["activityDate"].endswith("Z")
    assert mc.execute(method="delete_lead", id=[new_id]) == [{"id": new_id, "status": "deleted"}]
    deleted = mc.execute(method="get_deleted_leads", nextPageToken=token)
    assert [(d["leadId"], d["activityTypeId"], d["primaryAttributeValue"]) for d in deleted] == [
        (new_id, 37, "Zoë O'Brien")
    ]
    assert mc.execute(method="get_lead_by_id", id=new_id) == []


def test_custom_activity_type_lifecycle_and_activities(mc: MarketoClient) -> None:
    created = mc.execute(
        method="create_custom_activity_type",
        apiName="personSyncResult",
        name="Person Sync Result",
        triggerName="Has Person Sync Result",
        filterName="Had Person Sync Result",
        primaryAttributeApiName="syncRunId",
        primaryAttributeName="Sync Run Id",
    )
    assert created[0]["status"] == "draft"
    mc.execute(
        method="create_custom_activity_type_attribute",
        apiName="personSyncResult",
        attributes=[
            {"apiName": "outcome", "name": "Outcome", "dataType": "string"},
            {"apiName": "changedFields", "name": "Changed Fields", "dataType": "text"},
        ],
    )
    approved = mc.execute(method="approve_custom_activity_type", apiName="personSyncResult")[0]
    assert approved["status"] == "approved"
    assert approved["id"] >= 100001
    assert [a["apiName"] for a in approved["attributes"]] == ["outcome", "changedFields"]
    type_id = approved["id"]
    assert type_id in [t["id"] for t in mc.execute(method="get_activity_types")]
    since = since_now()
    added = mc.execute(
        method="add_custom_activities",
        input=[
            {
                "leadId": 9,
                "activityDate": since,
                "activityTypeId": type_id,
                "primaryAttributeValue": "run-1",
                "attributes": [
                    {"apiName": "outcome", "value": "updated"},
                    {"name": "Changed Fields", "value": "email"},
                ],
            },
            {
                "leadId": 999999,
                "activityDate": since,
                "activityTypeId": type_id,
                "primaryAttributeValue": "run-1",
                "attributes": [],
            },
        ],
    )
    assert added[0]["status"] == "added"
    assert added[0]["marketoGUID"]
    assert added[1] == {"status": "skipped", "errors": [{"code": "1004", "message": "Lead not found"}]}
    read = mc.execute(method="get_lead_activities", activityTypeIds=[str(type_id)], sinceDatetime=since, leadIds=["9"])
    assert len(read) == 1
    assert read[0]["primaryAttributeValue"] == "run-1"
    assert {"name": "Outcome", "value": "updated", "apiName": "outcome"} in read[0]["attributes"]


def test_bulk_export_through_marketorestpython(mc: MarketoClient) -> None:
    end = datetime.now(UTC)
    window = {
        "createdAt": {
            "startAt": (end - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endAt": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    job = mc.execute(
        method="create_leads_export_job", fields=["id", "email", "firstName", "dynamicsLeadId"], filters=window
    )[0]
    assert job["status"] == "Created"
    assert mc.execute(method="enqueue_leads_export_job", job_id=job["exportId"])[0]["status"] == "Queued"
    deadline = time.monotonic() + 10
    status = job
    while status["status"] != "Completed" and time.monotonic() < deadline:
        status = mc.execute(method="get_leads_export_job_status", job_id=job["exportId"])[0]
    assert status["status"] == "Completed"
    data = mc.execute(method="get_leads_export_job_file", job_id=job["exportId"])
    assert len(data) == status["fileSize"]
    assert status["fileChecksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert len(rows) == status["numberOfRecords"] > 0
    assert all(row["dynamicsLeadId"] == "null" for row in rows)


def test_bad_secret_is_refused(info: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match="Bad client credentials"):
        client_for(info, monkeypatch, secret="wrong").execute(method="describe")


def test_client_reauthenticates_when_a_short_token_expires(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox()
    admin = SandboxAdmin(sandbox.info)
    admin.marketo.config(token_ttl=30)  # under marketorestpython's 60 s margin: it asks before every call
    client = client_for(sandbox.info, monkeypatch)
    client.execute(method="get_lead_by_id", id=1)
    first = client.token
    client.execute(method="get_lead_by_id", id=2)
    assert client.token == first
    assert client.expires_in <= 30
    admin.marketo.advance_clock(31)
    assert client.execute(method="get_lead_by_id", id=3)[0]["id"] == 3
    assert client.token != first
    assert admin.marketo.stats()["tokens_issued"] == 2
    admin.close()
