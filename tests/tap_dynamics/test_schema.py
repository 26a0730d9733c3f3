"""Column metadata -> Singer schema, case by case (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from tap_dynamics_leads.metadata import AttributeMetadata, EntityDefinition, merge_details, parse_attribute
from tap_dynamics_leads.schema import automatic_properties, property_schema, stream_schema


def column(name: str, kind: str, **kw) -> AttributeMetadata:
    return AttributeMetadata(logical_name=name, attribute_type=kind, **kw)


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("String", {}, {"type": ["string", "null"]}),
        ("Memo", {}, {"type": ["string", "null"]}),
        ("Integer", {}, {"type": ["integer", "null"]}),
        ("BigInt", {}, {"type": ["integer", "null"]}),
        ("Decimal", {}, {"type": ["number", "null"]}),
        ("Double", {}, {"type": ["number", "null"]}),
        ("Money", {}, {"type": ["number", "null"]}),
        ("Boolean", {}, {"type": ["boolean", "null"]}),
        ("Picklist", {}, {"type": ["integer", "null"]}),
        ("State", {}, {"type": ["integer", "null"]}),
        ("Status", {}, {"type": ["integer", "null"]}),
        ("DateTime", {"datetime_behavior": "UserLocal"}, {"type": ["string", "null"], "format": "date-time"}),
        ("DateTime", {"datetime_behavior": "DateOnly"}, {"type": ["string", "null"], "format": "date"}),
        ("Uniqueidentifier", {}, {"type": ["string", "null"], "format": "uuid"}),
        ("Lookup", {}, {"type": ["string", "null"]}),
        ("Customer", {}, {"type": ["string", "null"]}),
        ("Owner", {}, {"type": ["string", "null"]}),
        ("Virtual", {}, None),
        ("EntityName", {}, None),
        ("PartyList", {}, None),
        ("String", {"valid_for_read": False}, None),
    ],
)
def test_property_schema(kind: str, extra: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert property_schema(column("x", kind, **extra)) == expected


def test_stream_schema_names_lookups_as_value_and_adds_etag_and_delete_marker() -> None:
    entity = EntityDefinition(
        "contact",
        "contacts",
        "contactid",
        change_tracking_enabled=True,
        attributes=(
            column("contactid", "Uniqueidentifier"),
            column("emailaddress1", "String"),
            column("originatingleadid", "Lookup", targets=("lead",)),
            column("modifiedon", "DateTime"),
            column("statecode", "State"),
            column("new_synctomkto", "Boolean", is_custom=True),
            column("leadsourcecodename", "Virtual", attribute_of="leadsourcecode"),
            column("owneridname", "String", attribute_of="ownerid"),
        ),
    )
    schema = stream_schema(entity)
    assert sorted(schema["properties"]) == sorted(
        [
            "contactid",
            "emailaddress1",
            "_originatingleadid_value",
            "modifiedon",
            "statecode",
            "new_synctomkto",
            "odata_etag",
            "_sdc_deleted_at",
        ]
    )
    assert schema["properties"]["contactid"]["type"] == ["string"]
    assert not any("." in name for name in schema["properties"])
    assert automatic_properties(schema, "contactid") == [
        "contactid",
        "modifiedon",
        "emailaddress1",
        "odata_etag",
        "statecode",
        "_originatingleadid_value",
        "new_synctomkto",
        "_sdc_deleted_at",
    ]


def test_cast_details_merge_into_base_metadata() -> None:
    base = parse_attribute(
        {
            "LogicalName": "statuscode",
            "AttributeType": "Status",
            "RequiredLevel": {"Value": "None"},
            "IsValidForCreate": True,
        }
    )
    merged = merge_details(
        base,
        {
            "LogicalName": "statuscode",
            "OptionSet": {
                "Options": [
                    {"Value": 1, "State": 0, "Label": {"UserLocalizedLabel": {"Label": "New"}}},
                    {"Value": 3, "State": 1, "Label": {"LocalizedLabels": [{"Label": "Qualified"}]}},
                ]
            },
        },
    )
    assert [(o.value, o.label, o.state) for o in merged.options] == [(1, "New", 0), (3, "Qualified", 1)]
    assert merged.valid_for_create
    boolean = merge_details(
        parse_attribute({"LogicalName": "b", "AttributeType": "Boolean"}),
        {
            "OptionSet": {
                "TrueOption": {"Value": 1, "Label": {"UserLocalizedLabel": {"Label": "Yes"}}},
                "FalseOption": {"Value": 0, "Label": {"UserLocalizedLabel": {"Label": "No"}}},
            }
        },
    )
    assert sorted(boolean.option_values) == [0, 1]
    text = merge_details(
        parse_attribute({"LogicalName": "s", "AttributeType": "String"}),
        {"MaxLength": 50, "FormatName": {"Value": "Email"}},
    )
    assert (text.max_length, text.format_name) == (50, "Email")
