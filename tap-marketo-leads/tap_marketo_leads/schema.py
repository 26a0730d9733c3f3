"""The ``marketo_leads`` JSON Schema, built from Marketo's own field metadata (``leads/describe.json``).

Custom fields come along automatically; fields without a REST name are not reachable through the
API and are skipped; names with a dot are skipped too, because Meltano splits ``select`` patterns
on dots (docs/architecture.md §8). Types follow the recommended column of reference §5.2.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

KEY = "id"
REPLICATION_KEY = "updatedAt"
EMAIL = "email"
SYNC_FILTER_FIELD = "syncToDynamics"
DELETED_AT = "_sdc_deleted_at"
#: Sent whatever the selection (docs/architecture.md §9.3), when the subscription has them.
AUTOMATIC_FIELDS = (KEY, REPLICATION_KEY, EMAIL, SYNC_FILTER_FIELD)

_STRING_TYPES = frozenset({"string", "email", "phone", "url", "text", "textarea", "reference", "lead_function"})
_INTEGER_TYPES = frozenset({"integer", "score"})
_NUMBER_TYPES = frozenset({"float", "currency", "percent"})


def json_schema_for(data_type: str) -> dict[str, Any]:
    """The (nullable) JSON Schema of a Marketo ``dataType``."""
    kind = data_type.strip().lower()
    if kind in _INTEGER_TYPES:
        return {"type": ["integer", "null"]}
    if kind in _NUMBER_TYPES:
        return {"type": ["number", "null"]}
    if kind == "boolean":
        return {"type": ["boolean", "null"]}
    if kind == "datetime":
        return {"type": ["string", "null"], "format": "date-time"}
    if kind == "date":
        return {"type": ["string", "null"], "format": "date"}
    if kind == "array":
        return {"type": ["array", "null"], "items": {"type": ["integer", "number", "string", "null"]}}
    # string, email, phone, url, text, textarea, reference, lead_function and anything new (formula …)
    return {"type": ["string", "null"]}


@dataclass(frozen=True)
class FieldInfo:
    """What the stream and the target need to know about one person field."""

    name: str
    data_type: str
    read_only: bool
    length: int | None
    display_name: str
    #: ``updateable`` in ``leads/describe2.json``: False for read-only and company fields, which ``leads.json``
    #: updates silently ignore. Describe has no such flag, so it stays True until describe2 says otherwise.
    updatable: bool = True


@dataclass
class LeadSchema:
    """The stream schema plus per-field facts (read-only, data type) for the catalog metadata."""

    schema: dict[str, Any]
    fields: dict[str, FieldInfo] = field(default_factory=dict)

    @property
    def automatic(self) -> list[str]:
        """Properties always sent, whatever the selection."""
        return [name for name in (*AUTOMATIC_FIELDS, DELETED_AT) if name in self.schema["properties"]]

    @property
    def read_only(self) -> list[str]:
        """Fields Marketo does not let the API write."""
        return [name for name, info in self.fields.items() if info.read_only]


def fields_from_describe(describe: Iterable[Mapping[str, Any]]) -> dict[str, FieldInfo]:
    """Usable REST fields of ``leads/describe.json`` by REST name, in Marketo's order."""
    fields: dict[str, FieldInfo] = {}
    for entry in describe:
        rest = entry.get("rest")
        if not isinstance(rest, Mapping) or not rest.get("name"):
            continue  # SOAP-only field: the REST API cannot read it
        name = str(rest["name"])
        if "." in name:
            logger.warning("Marketo field %r skipped: Meltano cannot select names containing a dot", name)
            continue
        length = entry.get("length")
        fields[name] = FieldInfo(
            name=name,
            data_type=str(entry.get("dataType") or "string"),
            read_only=bool(rest.get("readOnly", False)),
            length=int(length) if isinstance(length, int) else None,
            display_name=str(entry.get("displayName") or name),
        )
    return fields


def build_lead_schema(describe: Iterable[Mapping[str, Any]]) -> LeadSchema:
    """The stream's schema: every REST field typed, ``id``/``updatedAt`` never null, plus ``_sdc_deleted_at``."""
    fields = fields_from_describe(describe)
    properties: dict[str, Any] = {}
    for name, info in fields.items():
        properties[name] = json_schema_for(info.data_type)
    properties[KEY] = {"type": ["integer"]}
    properties[REPLICATION_KEY] = {"type": ["string"], "format": "date-time"}
    properties.setdefault(EMAIL, {"type": ["string", "null"]})
    properties[DELETED_AT] = {"type": ["string", "null"], "format": "date-time"}
    schema = {"type": "object", "properties": properties, "required": [KEY, REPLICATION_KEY]}
    return LeadSchema(schema=schema, fields=fields)
