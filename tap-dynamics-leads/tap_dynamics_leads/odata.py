"""OData literals and URLs built so that no user value can change the meaning of a query.

Every value that reaches a ``$filter`` or a key segment passes through one of these functions:
strings are quoted with ``'`` doubled (OData's only escape), GUIDs are parsed and re-printed, and
datetimes are formatted as UTC ISO-8601. The query string is then percent-encoded by
:func:`encode_query`, so ``&``, ``#`` and ``+`` inside a literal cannot split or end the parameter.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from urllib.parse import quote

#: Characters left unescaped in query values: OData punctuation the service reads literally.
_QUERY_SAFE = "$,()':/@*-._~"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def string_literal(value: str) -> str:
    """An OData string literal: single-quoted, with every ``'`` doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def guid(value: str | uuid.UUID) -> str:
    """A GUID in canonical form; raises ValueError for anything that is not one.

    GUIDs go unquoted into key segments and filters, so a value that is not a GUID would be
    syntax; parsing it first makes injection impossible.
    """
    try:
        parsed = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip().strip("{}"))
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{value!r} is not a GUID") from exc
    return str(parsed)


def datetime_literal(value: datetime | str) -> str:
    """An unquoted UTC ``Edm.DateTimeOffset`` literal (naive datetimes are taken as UTC)."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> datetime:
    """Parse an ISO-8601 timestamp as Dataverse and the SDK write it (``Z`` or an offset)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def literal(value: object) -> str:
    """Any Python value as an OData literal (str, bool, int, float, None, datetime, date, UUID)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return guid(value)
    if isinstance(value, datetime):
        return datetime_literal(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return string_literal(value)
    raise TypeError(f"no OData literal for {type(value).__name__}")


def identifier(name: str) -> str:
    """A column, entity-set or action name, checked so that it cannot carry syntax."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid Dataverse identifier")
    return name


def eq(column: str, value: object) -> str:
    """``column eq <literal>``."""
    return f"{identifier(column)} eq {literal(value)}"


def is_in(column: str, values: Iterable[str]) -> str:
    """``Microsoft.Dynamics.CRM.In(PropertyName='column',PropertyValues=[...])``: many values in one filter."""
    items = ",".join(string_literal(value) for value in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName={string_literal(identifier(column))},PropertyValues=[{items}])"


def select_clause(columns: Iterable[str]) -> str:
    """A ``$select`` value (order kept, duplicates dropped, every name checked)."""
    seen: dict[str, None] = {}
    for column in columns:
        seen[identifier(column)] = None
    return ",".join(seen)


def entity_path(entity_set: str, row_id: str | uuid.UUID) -> str:
    """The key segment ``leads(<guid>)`` of one row."""
    return f"{identifier(entity_set)}({guid(row_id)})"


def encode_query(params: Mapping[str, str | None]) -> str:
    """Percent-encode query options, keeping ``$`` names and OData punctuation readable."""
    parts = []
    for name, value in params.items():
        if value is None:
            continue
        parts.append(f"{quote(name, safe='$')}={quote(value, safe=_QUERY_SAFE)}")
    return "&".join(parts)
