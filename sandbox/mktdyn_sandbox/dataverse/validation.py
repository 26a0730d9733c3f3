"""Server-side checks of a write payload, as Dataverse applies them (reference §4.2, §6).

What Dataverse rejects is rejected with its code (undeclared property, wrong JSON type, string over
MaxLength, option value out of range, statuscode not of the statecode, SystemRequired set to null); what
it tolerates is tolerated: values for columns not valid for create/update are silently dropped and
ApplicationRequired columns are not enforced. That asymmetry is exactly why mktdyn validates before
writing, so the sandbox must not be stricter than the service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from mktdyn_sandbox.dataverse import errors
from mktdyn_sandbox.dataverse.metadata import ENTITY_SETS, Attribute, Entity

GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_BIND = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v\d+\.\d+/)?(?P<set>\w+)\((?P<id>[^)]*)\)$")
_EDM = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "Integer": "Edm.Int32",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Boolean": "Edm.Boolean",
    "DateTime": "Edm.DateTimeOffset",
    "Uniqueidentifier": "Edm.Guid",
}
LOOKUP_TARGET = "@Microsoft.Dynamics.CRM.lookuplogicalname"
MIN_DATE = date(1753, 1, 1)


@dataclass(frozen=True)
class WriteTarget:
    """What is being written: the table, create or update, and the row's current values (updates)."""

    entity: Entity
    mode: str
    record_id: str
    existing: dict[str, Any] | None = None


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "[object]"
    return str(value)


def _convert(target: WriteTarget, attribute: Attribute, value: Any) -> Any:
    """Check the JSON type of one value and normalise it (datetimes to UTC seconds, GUIDs lower-case)."""
    kind = attribute.attribute_type
    edm = "Edm.Date" if attribute.date_only else _EDM.get(kind, "Edm.String")
    wrong = errors.payload_error(
        target.entity.entity_set, f"Cannot convert the literal '{_literal(value)}' to the expected type '{edm}'."
    )
    if kind in ("String", "Memo"):
        if not isinstance(value, str):
            raise wrong
        return value
    if kind in ("Integer", "Picklist", "State", "Status", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "Uniqueidentifier":
        if not isinstance(value, str) or not GUID.fullmatch(value):
            raise wrong
        return value.lower()
    if kind == "DateTime":
        if not isinstance(value, str):
            raise wrong
        return _datetime(target, attribute, value, wrong)
    raise wrong


def _datetime(target: WriteTarget, attribute: Attribute, value: str, wrong: errors.DataverseError) -> str:
    try:
        if attribute.date_only:
            day = date.fromisoformat(value[:10])
            if len(value) > 10 and value[10] != "T":
                raise ValueError(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00")))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise wrong from exc
    if moment.date() < MIN_DATE:
        raise errors.bad_request(
            errors.INVALID_ARGUMENT,
            f"The date-time format for {attribute.logical_name} is invalid, or value is outside the supported range.",
        )
    if attribute.date_only:
        return moment.date().isoformat()
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_value(target: WriteTarget, attribute: Attribute, value: Any) -> None:
    entity = target.entity
    if attribute.max_length is not None and isinstance(value, str) and len(value) > attribute.max_length:
        raise errors.bad_request(
            errors.ATTRIBUTE_TOO_LONG,
            f"A validation error occurred.  The length of the '{attribute.logical_name}' attribute of the "
            f"'{entity.logical_name}' entity exceeded the maximum allowed length of '{attribute.max_length}'.",
        )
    if attribute.attribute_type in ("Picklist", "State", "Status") and attribute.option(value) is None:
        raise errors.bad_request(
            errors.OPTION_OUT_OF_RANGE,
            f"A validation error occurred. The value {value} of '{attribute.logical_name}' on record of type "
            f"'{entity.logical_name}' is outside the valid range. Accepted Values: "
            f"{','.join(str(o.value) for o in attribute.options)}",
        )


def _bind(target: WriteTarget, nav: str, value: Any, exists: Callable[[str, str], bool]) -> dict[str, Any]:
    entity = target.entity
    attribute, targets = entity.binds[nav]
    if value is None:
        if attribute.required == "SystemRequired":
            raise errors.bad_request(
                errors.INVALID_ARGUMENT, f"Attribute: {attribute.logical_name} cannot be set to NULL"
            )
        return {attribute.read_name: None, attribute.read_name + LOOKUP_TARGET: None}
    match = _BIND.match(value) if isinstance(value, str) else None
    if match is None or not GUID.fullmatch(match["id"]):
        raise errors.payload_error(
            entity.entity_set,
            f"Cannot convert the literal '{_literal(value)}' to an entity "
            f"reference for navigation property '{nav}'. Expected '/<entityset>(<guid>)'.",
        )
    by_set = {ENTITY_SETS[t]: t for t in targets}
    target_entity = by_set.get(match["set"])
    if target_entity is None:
        raise errors.payload_error(
            entity.entity_set,
            f"The entity set '{match['set']}' is not a valid target of "
            f"the navigation property '{nav}' (expected {', '.join(sorted(by_set))}).",
        )
    record_id = match["id"].lower()
    if not exists(target_entity, record_id):
        raise errors.not_found(target_entity, record_id)
    return {attribute.read_name: record_id, attribute.read_name + LOOKUP_TARGET: target_entity}


def validate(target: WriteTarget, payload: Any, exists: Callable[[str, str], bool]) -> dict[str, Any]:
    """The changes a payload makes, by stored name; raises DataverseError as the service would.

    ``exists(entity, id)`` answers whether a lookup target exists (binding to a missing row is a 404).
    """
    entity = target.entity
    if not isinstance(payload, dict):
        raise errors.payload_error(entity.entity_set, "The payload must be a JSON object describing the entity.")
    writable = "valid_for_create" if target.mode == "create" else "valid_for_update"
    changes: dict[str, Any] = {}
    for key, raw_value in payload.items():
        value = raw_value
        if key.startswith("@"):
            continue  # @odata.type / @odata.id / @odata.etag describe the payload, not columns
        name, at, annotation = key.partition("@")
        if at:
            if annotation != "odata.bind":
                if name in entity.by_name or name in entity.binds:
                    continue  # instance annotations on declared properties are read and ignored
                raise _undeclared(entity, name)
            if name not in entity.binds:
                raise _undeclared(entity, name)
            if getattr(entity.binds[name][0], writable):
                changes.update(_bind(target, name, value, exists))
            continue
        attribute = entity.by_name.get(key)
        if attribute is None or attribute.attribute_type == "Virtual":
            if key in entity.by_read_name:
                raise errors.payload_error(
                    entity.entity_set,
                    "CRM do not support direct update of Entity "
                    f"Reference properties, Use Navigation properties instead ('{key}').",
                )
            raise _undeclared(entity, key)
        if attribute.is_lookup:
            raise errors.payload_error(
                entity.entity_set,
                f"Does not support untyped value in non-open type: "
                f"'{key}' is a navigation property; write '{key}@odata.bind'.",
            )
        if value is None:
            if attribute.required == "SystemRequired" and getattr(attribute, writable):
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT, f"Attribute: {attribute.logical_name} cannot be set to NULL"
                )
        else:
            value = _convert(target, attribute, value)
        if not getattr(attribute, writable):
            continue  # Dataverse silently ignores columns that are not valid for this operation
        if value is not None:
            _check_value(target, attribute, value)
        changes[attribute.logical_name] = value
    _check_state(target, changes)
    return changes


def _undeclared(entity: Entity, name: str) -> errors.DataverseError:
    return errors.payload_error(
        entity.entity_set,
        f"An undeclared property '{name}' which only has property annotations in the payload "
        "but no property value was found in the payload. In OData, only declared navigation properties and "
        f"declared named streams can be represented as properties without values. The property '{name}' does "
        f"not exist on type 'Microsoft.Dynamics.CRM.{entity.logical_name}'.",
    )


def _check_state(target: WriteTarget, changes: dict[str, Any]) -> None:
    """Statuscode must be one of the statecode's reasons; a state change alone takes its default reason."""
    entity = target.entity
    state_attribute, status_attribute = entity.by_name["statecode"], entity.by_name["statuscode"]
    existing = target.existing or {}
    state = changes.get("statecode", existing.get("statecode", 0))
    state_option = state_attribute.option(state)
    if "statecode" in changes and changes.get("statuscode") is None and state_option is not None:
        changes["statuscode"] = state_option.default_status
    status = changes.get("statuscode")
    if status is None:
        return
    option = status_attribute.option(status)
    if option is not None and option.state != state:
        state_name = state_option.invariant_name if state_option else str(state)
        raise errors.bad_request(
            errors.INVALID_STATUS_FOR_STATE,
            f"{status} is not a valid status code for state code {entity.schema_name}State.{state_name} on "
            f"{entity.logical_name} with Id {target.record_id}.",
        )
