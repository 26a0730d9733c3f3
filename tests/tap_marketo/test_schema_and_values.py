"""describe → JSON Schema, and the value typing both extraction paths share."""

from __future__ import annotations

import pytest
from tap_marketo_leads.schema import build_lead_schema, json_schema_for
from tap_marketo_leads.values import ValueTyper

DESCRIBE = [
    {"id": 1, "displayName": "Id", "dataType": "integer", "rest": {"name": "id", "readOnly": True}},
    {"id": 2, "displayName": "Email", "dataType": "email", "length": 255, "rest": {"name": "email", "readOnly": False}},
    {"id": 3, "displayName": "Updated", "dataType": "datetime", "rest": {"name": "updatedAt", "readOnly": True}},
    {"id": 4, "displayName": "Score", "dataType": "score", "rest": {"name": "leadScore"}},
    {"id": 5, "displayName": "Sync", "dataType": "boolean", "rest": {"name": "syncToDynamics"}},
    {"id": 6, "displayName": "Birthday", "dataType": "date", "rest": {"name": "dateOfBirth"}},
    {"id": 7, "displayName": "Revenue", "dataType": "currency", "rest": {"name": "annualRevenue"}},
    {"id": 8, "displayName": "Pct", "dataType": "percent", "rest": {"name": "pct"}},
    {"id": 9, "displayName": "SOAP only", "dataType": "string", "soap": {"name": "SoapOnly"}},
    {"id": 10, "displayName": "Dotted", "dataType": "string", "rest": {"name": "a.b"}},
    {"id": 11, "displayName": "Formula", "dataType": "formula", "rest": {"name": "calc", "readOnly": True}},
]


@pytest.mark.parametrize(
    ("data_type", "expected"),
    [
        ("string", {"type": ["string", "null"]}),
        ("textarea", {"type": ["string", "null"]}),
        ("reference", {"type": ["string", "null"]}),
        ("integer", {"type": ["integer", "null"]}),
        ("score", {"type": ["integer", "null"]}),
        ("percent", {"type": ["number", "null"]}),
        ("float", {"type": ["number", "null"]}),
        ("currency", {"type": ["number", "null"]}),
        ("boolean", {"type": ["boolean", "null"]}),
        ("datetime", {"type": ["string", "null"], "format": "date-time"}),
        ("date", {"type": ["string", "null"], "format": "date"}),
        ("formula", {"type": ["string", "null"]}),
    ],
)
def test_data_types(data_type: str, expected: dict[str, object]) -> None:
    assert json_schema_for(data_type) == expected


def test_schema_from_describe() -> None:
    lead_schema = build_lead_schema(DESCRIBE)
    properties = lead_schema.schema["properties"]
    assert "SoapOnly" not in properties
    assert "a.b" not in properties
    assert properties["id"] == {"type": ["integer"]}
    assert properties["updatedAt"] == {"type": ["string"], "format": "date-time"}
    assert properties["_sdc_deleted_at"]["format"] == "date-time"
    assert set(lead_schema.read_only) == {"id", "updatedAt", "calc"}
    assert lead_schema.automatic == ["id", "updatedAt", "email", "syncToDynamics", "_sdc_deleted_at"]


def test_values_typed_from_csv_and_json_alike() -> None:
    schema = build_lead_schema(DESCRIBE).schema["properties"]
    typer = ValueTyper(schema)
    assert typer.from_csv("leadScore", "42") == 42 == typer.from_json("leadScore", 42)
    assert typer.from_csv("syncToDynamics", "true") is True
    assert typer.from_csv("syncToDynamics", "false") is False
    assert typer.from_csv("annualRevenue", "1234.5") == 1234.5
    assert typer.from_csv("updatedAt", "2024-05-01T10:00:00+0000") == "2024-05-01T10:00:00Z"
    assert typer.from_json("updatedAt", "2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00Z"
    assert typer.from_csv("dateOfBirth", "1990-02-03") == "1990-02-03"
    assert typer.from_csv("email", "null") is None
    assert typer.from_csv("email", "") is None
    assert typer.from_json("email", "") is None
    assert typer.from_csv("leadScore", "") is None
    assert typer.from_csv("leadScore", "n/a") is None
