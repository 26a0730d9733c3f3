"""Singer JSON Schemas for ``dynamics_leads`` / ``dynamics_contacts`` from Dataverse column metadata.

Pure functions: the stream builds its schema from an :class:`EntityDefinition` fetched once, with
every readable column (custom ones included) typed the way the Web API returns its values.
"""

from __future__ import annotations

from typing import Any

from tap_dynamics_leads.metadata import SKIPPED_TYPES, AttributeMetadata, EntityDefinition

ETAG_PROPERTY = "odata_etag"
DELETED_AT_PROPERTY = "_sdc_deleted_at"
REPLICATION_KEY = "modifiedon"
EMAIL_COLUMN = "emailaddress1"
SYNC_FILTER_COLUMN = "new_synctomkto"
#: Properties docs/architecture.md §9.3 sends whatever the selection (besides the key and the replication key).
ALWAYS_SENT = (
    REPLICATION_KEY,
    EMAIL_COLUMN,
    ETAG_PROPERTY,
    "statecode",
    "_originatingleadid_value",
    SYNC_FILTER_COLUMN,
    DELETED_AT_PROPERTY,
)

_STRING = {"type": ["string", "null"]}
_JSON_TYPES: dict[str, dict[str, Any]] = {
    "String": _STRING,
    "Memo": _STRING,
    "Uniqueidentifier": {"type": ["string", "null"]},
    "Lookup": _STRING,
    "Customer": _STRING,
    "Owner": _STRING,
    "Integer": {"type": ["integer", "null"]},
    "BigInt": {"type": ["integer", "null"]},
    "Picklist": {"type": ["integer", "null"]},
    "State": {"type": ["integer", "null"]},
    "Status": {"type": ["integer", "null"]},
    "Decimal": {"type": ["number", "null"]},
    "Double": {"type": ["number", "null"]},
    "Money": {"type": ["number", "null"]},
    "Boolean": {"type": ["boolean", "null"]},
}


def property_schema(attribute: AttributeMetadata) -> dict[str, Any] | None:
    """The JSON Schema of one column as read, or None when it is not a readable value."""
    if not attribute.valid_for_read:
        return None
    if attribute.is_multiselect:
        # Virtual in AttributeType but a real value: the selected options as "1,3".
        return {"type": ["string", "null"]}
    if attribute.attribute_type in SKIPPED_TYPES:
        return None
    if attribute.attribute_type == "DateTime":
        fmt = "date" if attribute.datetime_behavior == "DateOnly" else "date-time"
        return {"type": ["string", "null"], "format": fmt}
    found = _JSON_TYPES.get(attribute.attribute_type)
    if found is None:
        return None
    schema = dict(found)
    if attribute.attribute_type == "Uniqueidentifier":
        schema["format"] = "uuid"
    return schema


def readable_columns(entity: EntityDefinition) -> dict[str, AttributeMetadata]:
    """Row property name -> column, for every column the stream can carry (no dots, ever)."""
    columns: dict[str, AttributeMetadata] = {}
    for attribute in entity.attributes:
        if property_schema(attribute) is None or "." in attribute.read_name:
            continue
        if attribute.attribute_of and attribute.attribute_type != "Virtual" and not attribute.is_lookup:
            # Computed companions (yominame, ...name of a lookup) duplicate their parent column.
            continue
        columns[attribute.read_name] = attribute
    return columns


def stream_schema(entity: EntityDefinition) -> dict[str, Any]:
    """The stream's schema: readable columns, the row's ETag and the delete marker."""
    properties: dict[str, Any] = {}
    for name, attribute in sorted(readable_columns(entity).items()):
        schema = property_schema(attribute)
        if schema is not None:
            properties[name] = schema
    key = entity.primary_id
    properties[key] = {"type": ["string"], "format": "uuid"}
    properties.setdefault(REPLICATION_KEY, {"type": ["string", "null"], "format": "date-time"})
    properties[ETAG_PROPERTY] = {"type": ["string", "null"]}
    properties[DELETED_AT_PROPERTY] = {"type": ["string", "null"], "format": "date-time"}
    return {"type": "object", "properties": properties}


def automatic_properties(schema: dict[str, Any], key: str) -> list[str]:
    """Properties sent whatever the selection (docs/architecture.md §9.3) that this schema has."""
    names = [key, *ALWAYS_SENT]
    return [name for name in names if name in schema.get("properties", {})]
