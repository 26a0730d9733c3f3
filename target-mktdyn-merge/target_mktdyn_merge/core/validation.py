"""Pre-write validation: every payload bound for Dynamics or Marketo is checked before it is sent.

Why this exists (docs/architecture.md §1, §8): Dataverse enforces only ``SystemRequired`` columns and *silently ignores*
values for columns that are not valid for the operation, so a payload that "succeeds" may not have written
what the merge decided; Marketo likewise drops read-only and company fields on update and skips whole records
for a non-ASCII email. Checking first means a value either system would reject or ignore is never sent, and
the failure names the record's field and the rule broken, so it can go to the activity log.

The Dynamics side compiles one JSON Schema (Draft 2020-12, reference §4.3) per table and operation from the
attribute metadata and keeps the compiled validator; the few rules JSON Schema cannot say (statuscode must
belong to the statecode, also when one of them is only in the row's ``current`` values) are checked in
Python after it. The Marketo side is a small table-driven check over ``leads/describe.json``.

Pure: no I/O and no clock. A validator is cheap to share between threads: compiled schemas are cached and a
race only compiles the same schema twice.

Default policy for callers: a record with any violation is held back *whole* (a partial update could break
business rules that tie fields together, e.g. a status without its state); :func:`split_valid` exists for
callers that decide otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Literal

# jsonschema ships no type stubs (types-jsonschema is not a dependency): its names are Any to mypy.

__all__ = [
    "DYNAMICS_ENTITY_SETS",
    "Operation",
    "RequiredPolicy",
    "Violation",
    "split_valid",
]

Operation = Literal["create", "update"]
RequiredPolicy = Literal["none", "create", "always"]
OPERATIONS: Final = ("create", "update")
REQUIRED_POLICIES: Final = ("none", "create", "always")

#: Entity sets of lookup targets (reference §4.3); other targets fall back to ``<logical name>s``.
DYNAMICS_ENTITY_SETS: Final[Mapping[str, str]] = {
    "lead": "leads",
    "contact": "contacts",
    "account": "accounts",
    "systemuser": "systemusers",
    "team": "teams",
    "opportunity": "opportunities",
    "businessunit": "businessunits",
}
#: The earliest date Dataverse stores (SQL ``datetime``); earlier values are rejected by the service.
MIN_DATAVERSE_DATE: Final = date(1753, 1, 1)
INT32_RANGE: Final = (-(2**31), 2**31 - 1)
INT64_RANGE: Final = (-(2**63), 2**63 - 1)
MONEY_RANGE: Final = (-922_337_203_685_477.0, 922_337_203_685_477.0)

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID_RE = re.compile(f"^{_GUID}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# RFC 3339 as JSON Schema's date-time means it, minutes-only allowed: an offset is mandatory, because a
# naive time is ambiguous for UserLocal columns and Edm.DateTimeOffset is what the service expects.
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([Zz]|[+-]\d{2}:?\d{2})$")
_MULTISELECT_RE = re.compile(r"^\d+(,\d+)*$")
_STRING_TYPES = frozenset({"String", "Memo"})
_INTEGER_TYPES = frozenset({"Integer", "BigInt"})
_NUMBER_TYPES = frozenset({"Decimal", "Double", "Money"})
_OPTION_TYPES = frozenset({"Picklist", "State", "Status"})
_LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
_SHORT_VALUE = 40


@dataclass(frozen=True)
class Violation:
    """One reason a payload must not be sent.

    Attributes:
        field: The payload key at fault (``parentcontactid@odata.bind`` for a lookup), or the missing
            column's name for a ``required`` violation; ``""`` when the payload itself is not an object.
        rule: A short machine name (``max_length``, ``type``, ``format``, ``option_value``, ``required``,
            ``not_writable``, ``status_state``, ``minimum``, ``maximum``, ``date_range``, ``unknown_field``,
            ``ascii_email``, ``email_format``, ``read_only``) the activity log can count by.
        message: Plain words naming the field, the value (shortened) and the limit.
    """

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


def split_valid(payload: Mapping[str, Any], violations: Sequence[Violation]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Separate the fields that broke no rule from those that did.

    The write-back does NOT use this by default: it holds the whole record back, because sending only part
    of a change can break rules that tie fields together (a status without its state, a name half-updated).
    A caller that prefers to send what is valid can use this and keep the rest pending.

    A ``status_state`` violation holds back ``statecode`` too, since the pair is only meaningful together.
    A ``required`` violation for a column absent from the payload cannot be fixed by holding fields back:
    it is listed among the rejected fields, and the valid part still lacks that column.

    Args:
        payload: The payload that was validated.
        violations: What the validator reported for it.

    Returns:
        The payload without the rejected keys, and the rejected field names in report order, de-duplicated.
    """
    rejected: dict[str, None] = {}
    for violation in violations:
        rejected[violation.field] = None
        if violation.rule == "status_state" and "statecode" in payload:
            rejected["statecode"] = None
    valid = {key: value for key, value in payload.items() if key not in rejected}
    return valid, tuple(rejected)


# -- shared helpers ---------------------------------------------------------------------------------------
def text_length(text: str) -> int:
    """Length as .NET and Java count it: UTF-16 code units.

    Dataverse (and Marketo) measure strings in UTF-16 code units, so a character outside the Basic
    Multilingual Plane (an emoji) counts twice. Counting code points (Python's ``len``) would let such a
    string through here and fail at the API; counting units is never more lenient than the service.
    """
    return len(text.encode("utf-16-le")) // 2


def _shorten(value: Any) -> str:
    """The value as a message shows it: strings quoted, long ones cut."""
    if isinstance(value, str):
        shown = value if len(value) <= _SHORT_VALUE else value[: _SHORT_VALUE - 1] + "…"
        return repr(shown)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = repr(value)
    return shown if len(shown) <= _SHORT_VALUE else shown[: _SHORT_VALUE - 1] + "…"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_integer(value: Any) -> bool:
    """A JSON integer: an int that is not a bool (1.0 is a number, and Dataverse's Int32 reader refuses it)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite JSON number (NaN and infinities are not JSON and cannot be sent)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _parse_date(text: str) -> date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _parse_datetime(text: str, basic_offset: bool = False) -> datetime | None:
    """An ISO 8601 date-time with a mandatory offset, or None.

    ``basic_offset`` also accepts ``+0000`` (Marketo takes it); OData's Edm.DateTimeOffset, and so
    Dataverse, only takes the extended ``+00:00``.
    """
    match = _DATETIME_RE.match(text)
    if match is None:
        return None
    day, clock, offset = match.groups()
    if not basic_offset and len(offset) == 5:
        return None
    if "." in clock:  # Python 3.11 reads at most 6 fraction digits; the service keeps seconds anyway
        whole, fraction = clock.split(".")
        clock = f"{whole}.{fraction[:6].ljust(6, '0')}"
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        return datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:
        return None


_KIND_WORDS: Final = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_FORMAT_WORDS: Final = {
    "date": "a date YYYY-MM-DD (DateOnly column)",
    "date-time": "a date-time with an offset, e.g. 2024-01-05T17:30:00Z",
    "uuid": "a GUID",
}
