"""Query options of a collection GET, paging and delta tokens, and how a stored row reads back.

``$select``, ``$filter``, ``$orderby``, ``$top``, ``$count`` and the ``Prefer`` preferences are parsed
here.

Paging tokens carry the keyset position of the last row returned (sort values plus the internal
sequence), so page N costs the same as page 1 and nothing is held between requests. Delta tokens carry
the version snapshot and the issue time (the docs' ``919042!08/22/2017 08:10:44`` shape), which is
what expiry is measured from.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mktdyn_sandbox.dataverse import errors, odata_filter
from mktdyn_sandbox.dataverse.metadata import Attribute, Entity
from mktdyn_sandbox.dataverse.store import OrderKey, StoredRow
from mktdyn_sandbox.dataverse.validation import LOOKUP_TARGET

MAX_PAGE_SIZE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
_COOKIE = re.compile(r'pagingcookie="(?P<cookie>[^"]*)"')
_DELTA = re.compile(r"^(?P<version>\d+)!(?P<issued>\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})$")
_DELTA_TIME = "%m/%d/%Y %H:%M:%S"
_PREFER_ITEM = re.compile(r'\s*([\w.-]+)\s*(?:=\s*("[^"]*"|[^,;]*))?')


@dataclass
class Prefer:
    """The ``Prefer`` preferences the Web API honours."""

    max_page_size: int | None = None
    annotations: str | None = None
    track_changes: bool = False
    return_representation: bool = False
    continue_on_error: bool = False
    applied: list[str] = field(default_factory=list)

    def wants(self, annotation: str) -> bool:
        """Whether ``odata.include-annotations`` asks for this annotation (``*`` patterns allowed)."""
        if not self.annotations:
            return False
        patterns = [p.strip() for p in self.annotations.split(",") if p.strip()]
        included = any(fnmatch.fnmatchcase(annotation, p) for p in patterns if not p.startswith("-"))
        excluded = any(fnmatch.fnmatchcase(annotation, p[1:]) for p in patterns if p.startswith("-"))
        return included and not excluded


def parse_prefer(header: str | None) -> Prefer:
    """Read a ``Prefer`` header (comma-separated, values optionally quoted)."""
    prefer = Prefer()
    for match in _PREFER_ITEM.finditer(header or ""):
        name, raw = match.group(1).lower(), (match.group(2) or "").strip()
        value = raw.strip('"')
        if name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
            prefer.max_page_size = int(value)
        elif name in ("odata.include-annotations", "include-annotations") and value:
            prefer.annotations = value
        elif name == "odata.track-changes":
            prefer.track_changes = True
        elif name == "return" and value == "representation":
            prefer.return_representation = True
        elif name == "odata.continue-on-error":
            prefer.continue_on_error = True
    return prefer


def applied_header(prefer: Prefer) -> dict[str, str]:
    """``Preference-Applied`` echoing what was honoured."""
    return {"Preference-Applied": ",".join(prefer.applied)} if prefer.applied else {}


# -- columns --------------------------------------------------------------------------------------------------
def _kind(attribute: Attribute) -> str:
    kind = attribute.attribute_type
    if kind in ("String", "Memo"):
        return "string"
    if kind in ("Integer", "BigInt", "Picklist", "State", "Status"):
        return "int"
    if kind == "Boolean":
        return "bool"
    if kind == "DateTime":
        return "date" if attribute.date_only else "datetime"
    return "guid"


def column(entity: Entity, name: str) -> odata_filter.Column:
    """How a readable property reads in SQL; unknown names are the documented 0x80060888."""
    attribute = entity.by_read_name.get(name)
    if attribute is None or attribute.attribute_type == "Virtual":
        raise errors.unknown_property(name, entity.logical_name)
    if attribute.logical_name == entity.primary_id:
        return odata_filter.Column("id", "guid")
    if name in ("versionnumber", "createdon", "modifiedon"):
        return odata_filter.Column(name, _kind(attribute))
    expression = f"json_extract(data, '$.\"{name}\"')"
    if name == "emailaddress1":
        return odata_filter.Column(expression, "string", folded_sql="email")
    return odata_filter.Column(expression, _kind(attribute))


def parse_select(entity: Entity, raw: str | None) -> list[Attribute] | None:
    """The selected columns, or None for all; a navigation property or unknown name is a 400."""
    if raw is None or not raw.strip():
        return None
    selected: list[Attribute] = []
    for name in (part.strip() for part in raw.split(",")):
        attribute = entity.by_read_name.get(name)
        if attribute is None or attribute.attribute_type == "Virtual":
            raise errors.unknown_property(name, entity.logical_name)
        if attribute not in selected:
            selected.append(attribute)
    return selected


def compile_filter(entity: Entity, raw: str | None) -> tuple[str, list[Any]]:
    """``$filter`` as a SQL condition with bound parameters ("1" when absent)."""
    if raw is None or not raw.strip():
        return "1", []
    try:
        return odata_filter.to_sql(odata_filter.parse(raw), lambda name: column(entity, name))
    except odata_filter.FilterError as exc:
        raise errors.bad_request(errors.UNKNOWN_PROPERTY, str(exc)) from exc


def parse_orderby(entity: Entity, raw: str | None) -> list[OrderKey]:
    """``$orderby`` terms (``name [asc|desc]``, comma-separated) as whitelisted SQL."""
    if raw is None or not raw.strip():
        return []
    keys: list[OrderKey] = []
    for term in (part.strip() for part in raw.split(",") if part.strip()):
        name, _, direction = term.partition(" ")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise errors.bad_request(errors.UNKNOWN_PROPERTY, f"Syntax error in $orderby: '{term}'.")
        resolved = column(entity, name.strip())
        keys.append(OrderKey(resolved.sql, direction == "desc", resolved.kind == "string"))
    return keys


def parse_top(raw: str | None) -> int | None:
    """``$top`` as a positive integer."""
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise errors.bad_request(errors.UNKNOWN_PROPERTY, f"Invalid value '{raw}' for $top query option.")
    return int(raw)


# -- tokens ---------------------------------------------------------------------------------------------------
def encode_skiptoken(state: dict[str, Any], page: int, tracking: bool) -> str:
    """A paging cookie in Dataverse's XML shape wrapping our keyset state (opaque to clients)."""
    cookie = base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")
    return f'<cookie pagenumber="{page}" pagingcookie="{cookie}" istracking="{tracking}" />'


def decode_skiptoken(token: str) -> dict[str, Any]:
    """The keyset state of a ``$skiptoken``; a garbled token is a 400."""
    match = _COOKIE.search(token)
    try:
        if match is None:
            raise ValueError(token)
        cookie = match["cookie"]
        state = json.loads(base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4)))
        if not isinstance(state, dict):
            raise ValueError(token)
        return state
    except (ValueError, binascii.Error) as exc:
        raise errors.bad_request(errors.INVALID_ARGUMENT, "The $skiptoken value is not valid.") from exc


def encode_deltatoken(version: int, issued: datetime) -> str:
    """``<version>!<MM/dd/yyyy HH:mm:ss>`` as in the docs' example."""
    return f"{version}!{issued.astimezone(UTC).strftime(_DELTA_TIME)}"


def decode_deltatoken(token: str) -> tuple[int, datetime]:
    """The version snapshot and issue time of a ``$deltatoken``; a garbled token is a 400."""
    match = _DELTA.match(token.strip())
    if match is None:
        raise errors.bad_request(errors.INVALID_ARGUMENT, f"The delta token '{token}' is not valid.")
    try:
        issued = datetime.strptime(match["issued"], _DELTA_TIME).replace(tzinfo=UTC)
    except ValueError as exc:
        raise errors.bad_request(errors.INVALID_ARGUMENT, f"The delta token '{token}' is not valid.") from exc
    return int(match["version"]), issued


# -- rendering ------------------------------------------------------------------------------------------------
def _formatted(attribute: Attribute, value: Any) -> str | None:
    kind = attribute.attribute_type
    if kind in ("Picklist", "State", "Status"):
        option = attribute.option(value)
        return option.label if option else None
    if kind == "Boolean":
        option = attribute.option(1 if value else 0)
        return option.label if option else None
    if kind == "DateTime" and isinstance(value, str):
        if attribute.date_only:
            day = datetime.strptime(value, "%Y-%m-%d")
            return f"{day.month}/{day.day}/{day.year}"
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        hour = moment.hour % 12 or 12
        return (
            f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
        )
    if kind in ("Integer", "BigInt") and isinstance(value, int):
        return f"{value:,}"
    return None


def render_row(entity: Entity, row: StoredRow, select: list[Attribute] | None, prefer: Prefer) -> dict[str, Any]:
    """A row as the Web API returns it.

    ETag, the selected columns (all readable ones when none), lookups as ``_x_value``, the primary key
    always, and the annotations the ``Prefer`` header asked for.
    """
    values = row.values()
    body: dict[str, Any] = {"@odata.etag": f'W/"{row.version}"'}
    for attribute in select or entity.readable():
        name = attribute.read_name
        value = row.id if attribute.logical_name == entity.primary_id else values.get(name)
        if value is not None and prefer.annotations:
            if attribute.is_lookup:
                target = values.get(name + LOOKUP_TARGET) or attribute.targets[0]
                navigation = attribute.logical_name
                if attribute.attribute_type == "Customer":
                    navigation = f"{attribute.logical_name}_{target}"
                if prefer.wants(NAVIGATION):
                    body[f"{name}@{NAVIGATION}"] = navigation
                if prefer.wants(LOOKUP_NAME):
                    body[f"{name}@{LOOKUP_NAME}"] = target
            elif prefer.wants(FORMATTED):
                formatted = _formatted(attribute, value)
                if formatted is not None:
                    body[f"{name}@{FORMATTED}"] = formatted
        body[name] = value
    body[entity.primary_id] = row.id
    return body


def context_fragment(entity: Entity, select: list[Attribute] | None) -> str:
    """``leads(firstname,lastname)`` / ``leads`` for ``@odata.context``."""
    if not select:
        return entity.entity_set
    return f"{entity.entity_set}({','.join(a.read_name for a in select)})"
