"""Marketo person payloads checked against describe before they are sent (docs/architecture.md §6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from tap_marketo_leads.schema import FieldInfo

from target_mktdyn_merge.core.validation import (
    OPERATIONS,
    Operation,
    Violation,
    _is_integer,
    _is_number,
    _json_kind,
    _parse_date,
    _parse_datetime,
    _shorten,
    text_length,
)

# -- Marketo ---------------------------------------------------------------------------------------------
_MARKETO_STRING_TYPES = frozenset({"string", "email", "phone", "url", "text", "textarea", "lead_function"})


_WHOLE: Final = (_is_integer, "a whole number")


_NUMBER: Final = (_is_number, "a number")


#: dataType -> (accepts the value, what it expects); types not listed (formula, ...) are not type-checked.
_MARKETO_VALUE_CHECKS: Final[Mapping[str, tuple[Callable[[Any], bool], str]]] = {
    "integer": _WHOLE,
    "score": _WHOLE,
    # reference fields (leadPartitionId, ...) hold integers; Marketo also takes their digits as text
    "reference": (lambda v: _is_integer(v) or (isinstance(v, str) and v.isdigit()), "a whole number"),
    "float": _NUMBER,
    "currency": _NUMBER,
    "percent": _NUMBER,
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "date": (lambda v: isinstance(v, str) and _parse_date(v) is not None, "a date YYYY-MM-DD"),
    "datetime": (
        lambda v: isinstance(v, str) and _parse_datetime(v, basic_offset=True) is not None,
        "a date-time with an offset, e.g. 2024-01-05T17:30:00Z",
    ),
}


class MarketoValidator:
    """Checks ``leads.json`` input records against ``leads/describe.json``.

    Marketo skips a whole record for an unknown field (1006) or a bad value (1003/1001), and silently drops
    read-only fields, and company fields on update (they belong to Sync Companies). Both kinds of outcome
    mean the person does not get what the merge decided, so both are violations here.

    Args:
        fields: REST name → field facts (``SyncMetadata.marketo_fields``).
    """

    def __init__(self, fields: Mapping[str, FieldInfo]) -> None:
        self.fields = fields

    def validate(self, operation: Operation, payload: Mapping[str, Any]) -> list[Violation]:
        """Every rule the input record breaks, in payload order; empty when it may be sent.

        Args:
            operation: ``create`` (``createOnly`` by email) or ``update`` (``updateOnly`` by id).
            payload: The input record, REST field names to JSON values.

        Raises:
            ValueError: Unknown operation.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be 'create' or 'update', not {operation!r}")
        if not isinstance(payload, Mapping):
            return [Violation("", "type", f"Marketo person: expected an object, got {_json_kind(payload)}")]
        violations: list[Violation] = []
        for name, value in payload.items():
            violations.extend(self._check_field(operation, name, value))
        lookup = "id" if operation == "update" else "email"
        if lookup not in payload:
            violations.append(
                Violation(lookup, "required", f"{lookup}: missing; a Marketo {operation} looks the person up by it")
            )
        return violations

    def _check_field(self, operation: str, name: str, value: Any) -> Iterator[Violation]:
        info = self.fields.get(name)
        shown = _shorten(value)
        if info is None:
            yield Violation(name, "unknown_field", f"{name}: Marketo has no person field named {name!r} (1006)")
            return
        if name == "id":
            yield from self._check_id(operation, value)
            return
        if info.read_only:
            yield Violation(name, "read_only", f"{name}: read-only in Marketo; {shown} would be ignored")
            return
        if operation == "update" and not info.updatable:
            yield Violation(
                name,
                "not_writable",
                f"{name}: not updateable in Marketo's describe2 (a company field: use Sync Companies); "
                f"{shown} would be ignored",
            )
            return
        if value is None or value == "":
            if name == "email" and operation == "create":
                yield Violation(name, "required", f"{name}: blank; a Marketo create needs an email")
            return
        yield from self._check_value(info, name, value)

    @staticmethod
    def _check_id(operation: str, value: Any) -> Iterator[Violation]:
        if operation == "create":
            yield Violation("id", "not_writable", "id: only an update may carry the person id (Marketo answers 1003)")
        elif not _is_integer(value) or value <= 0:
            yield Violation("id", "type", f"id: expected a positive whole number, got {_shorten(value)}")

    @staticmethod
    def _check_value(info: FieldInfo, name: str, value: Any) -> Iterator[Violation]:
        kind = info.data_type
        shown = _shorten(value)
        if kind in _MARKETO_STRING_TYPES:
            if not isinstance(value, str):
                yield Violation(name, "type", f"{name}: expected text ({kind}), got {shown} ({_json_kind(value)})")
                return
            if info.length is not None and text_length(value) > info.length:
                yield Violation(
                    name,
                    "max_length",
                    f"{name}: {text_length(value)} characters, Marketo allows at most {info.length} (length)",
                )
            if kind == "email":
                if not value.isascii():
                    yield Violation(
                        name, "ascii_email", f"{name}: {shown} has non-ASCII characters; Marketo emails must be ASCII"
                    )
                elif "@" not in value.strip(" @"):
                    yield Violation(name, "email_format", f"{name}: {shown} is not an email address")
            return
        check = _MARKETO_VALUE_CHECKS.get(kind)
        if check is not None and not check[0](value):
            yield Violation(name, "type", f"{name}: expected {check[1]} ({kind}), got {shown} ({_json_kind(value)})")
