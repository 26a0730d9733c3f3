"""Marketo's writability comes from Marketo's own metadata (describe + describe2), not from a list of ours."""

from __future__ import annotations

from typing import Any

from mktdyn_sandbox.marketo.fields import FIELDS
from mktdyn_sandbox.plugin_config import marketo_connection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.core.metadata import SyncMetadata

DESCRIBE = [
    {"id": 1, "displayName": "Website", "dataType": "url", "rest": {"name": "website", "readOnly": False}},
    {"id": 2, "displayName": "Title", "dataType": "string", "rest": {"name": "title", "readOnly": False}},
    {"id": 3, "displayName": "Created", "dataType": "datetime", "rest": {"name": "createdAt", "readOnly": True}},
    {"id": 4, "displayName": "Custom", "dataType": "string", "rest": {"name": "myField", "readOnly": False}},
]
DESCRIBE2 = [
    {"name": "website", "dataType": "url", "updateable": False},
    {"name": "title", "dataType": "string", "updateable": True},
    {"name": "createdAt", "dataType": "datetime", "updateable": False},
]


def test_a_field_describe2_calls_not_updateable_is_not_written_by_updates_but_set_by_creates() -> None:
    metadata = SyncMetadata.from_raw(DESCRIBE, {"lead": [], "contact": []}, DESCRIBE2)
    assert metadata.marketo_read_only == {"website", "createdAt"}
    assert metadata.marketo_not_creatable == {"createdAt"}  # Marketo creates the company with the person
    # a field describe2 does not list keeps describe's verdict
    assert "myField" not in metadata.marketo_read_only


def test_without_describe2_only_describe_read_only_fields_are_blocked() -> None:
    assert SyncMetadata.from_raw(DESCRIBE, {"lead": [], "contact": []}).marketo_read_only == {"createdAt"}


def test_the_sandbox_company_fields_are_read_only_through_the_client(sandbox_info: dict[str, Any]) -> None:
    with MarketoClient(MarketoConnection.from_config(marketo_connection(sandbox_info))) as client:
        metadata = SyncMetadata.from_raw(client.describe_leads(), {"lead": [], "contact": []}, client.describe_leads2())
        assert client.calls["metadata"] == 2
    company = {name for name, spec in FIELDS.items() if spec.company}
    assert "website" in company
    assert company <= metadata.marketo_read_only
    assert not company & metadata.marketo_not_creatable
    assert {"firstName", "title", "city"}.isdisjoint(metadata.marketo_read_only)
