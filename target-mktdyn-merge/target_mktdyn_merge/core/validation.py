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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Literal

# jsonschema ships no type stubs (types-jsonschema is not a dependency): its names are Any to mypy.
from jsonschema import (  # type: ignore[import-untyped]
    Draft202012Validator,
    FormatChecker,
    ValidationError,
    validators,
)
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from tap_dynamics_leads.metadata import AttributeMetadata, OptionValue
from tap_marketo_leads.schema import FieldInfo

__all__ = [
    "DYNAMICS_ENTITY_SETS",
    "DynamicsValidator",
    "MarketoValidator",
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


def _describe_options(values: Sequence[Any]) -> str:
    """``1 to 10`` for a run of consecutive values, else the list."""
    numbers = sorted(v for v in values if _is_integer(v))
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]} to {numbers[-1]}"
    return ", ".join(str(n) for n in numbers)


def _is_single_choice(attribute: AttributeMetadata | None) -> bool:
    """A picklist, state or status column (one option value, not a multi-select)."""
    return attribute is not None and attribute.attribute_type in _OPTION_TYPES and not attribute.is_multiselect


def _not_an_option(attribute: AttributeMetadata, key: str, shown: str) -> str:
    """``leadsourcecode: 'Carrier Pigeon' is not an option of Lead Source (options: 1 Advertisement, ...)``.

    The column's display name and each option's value and label: what the user can pick from in either
    system, rather than a bare range of numbers.
    """
    name = attribute.display_name or attribute.schema_name or key
    choices = ", ".join(
        f"{option.value} {option.label}".strip() for option in sorted(attribute.options, key=lambda o: o.value)
    )
    return f"{key}: {shown} is not an option of {name} (options: {choices})"


# -- Dynamics: schema keywords JSON Schema lacks -------------------------------------------------------------
def _kw_max_length(validator: Any, limit: int, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    """``maxLength`` counted in UTF-16 units, as Dataverse counts (see :func:`text_length`)."""
    if isinstance(instance, str) and text_length(instance) > limit:
        yield ValidationError(f"longer than {limit}", validator="maxLength", validator_value=limit, instance=instance)


def _kw_not_writable(
    validator: Any, operation: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """Any value for a column the operation cannot set: Dataverse would drop it without a word."""
    yield ValidationError(f"not valid for {operation}", validator="notWritable", validator_value=operation)


def _kw_required_value(
    validator: Any, level: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``null`` for a SystemRequired column; ``null`` or blank text for an ApplicationRequired one."""
    blank = instance is None or (level == "ApplicationRequired" and isinstance(instance, str) and not instance.strip())
    if blank:
        yield ValidationError("blank", validator="requiredValue", validator_value=level, instance=instance)


def _kw_min_date(validator: Any, minimum: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    """Dates before 1753-01-01 (compared in UTC for date-times), and date-times that overflow on the way."""
    if not isinstance(instance, str):
        return
    earliest = date.fromisoformat(minimum)
    day = _parse_date(instance)
    if day is None:
        moment = _parse_datetime(instance)
        if moment is None:
            return  # the format keyword reports it
        try:
            day = moment.astimezone(UTC).date()
        except OverflowError:
            yield ValidationError("out of range", validator="minDate", validator_value=minimum, instance=instance)
            return
    if day < earliest:
        yield ValidationError("too early", validator="minDate", validator_value=minimum, instance=instance)


def _kw_multi_options(
    validator: Any, allowed: list[int], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """A multi-select choice: ``"1,3"`` with each value in the option set."""
    if not isinstance(instance, str):
        return
    if not _MULTISELECT_RE.match(instance) or any(int(part) not in allowed for part in instance.split(",")):
        yield ValidationError("bad options", validator="enum", validator_value=allowed, instance=instance)


def _kw_use_bind(
    validator: Any, bind_keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """A lookup written by value: Dataverse only takes ``<nav>@odata.bind``."""
    yield ValidationError("use bind", validator="useBind", validator_value=bind_keys, instance=instance)


def _kw_required_lookups(
    validator: Any, required: Mapping[str, list[str]], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """An ApplicationRequired lookup must be bound through one of its navigation properties."""
    if not isinstance(instance, Mapping):
        return
    for column, keys in required.items():
        if not any(instance.get(key) not in (None, "") for key in keys):
            yield ValidationError(column, validator="requiredLookup", validator_value=keys, instance=column)


def _check_date(instance: object) -> bool:
    return not isinstance(instance, str) or _parse_date(instance) is not None


def _check_datetime(instance: object) -> bool:
    return not isinstance(instance, str) or _parse_datetime(instance) is not None


def _check_uuid(instance: object) -> bool:
    return not isinstance(instance, str) or _GUID_RE.match(instance) is not None


def _format_checker() -> FormatChecker:
    """Our own format checks, so results do not depend on jsonschema's optional extras being installed."""
    checker = FormatChecker(formats=())
    checker.checks("date")(_check_date)
    checker.checks("date-time")(_check_datetime)
    checker.checks("uuid")(_check_uuid)
    return checker


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"integer": lambda _checker, value: _is_integer(value), "number": lambda _checker, value: _is_number(value)}
)
_DataverseSchemaValidator: type[Validator] = validators.extend(
    Draft202012Validator,
    validators={
        "maxLength": _kw_max_length,
        "notWritable": _kw_not_writable,
        "requiredValue": _kw_required_value,
        "minDate": _kw_min_date,
        "multiOptions": _kw_multi_options,
        "useBind": _kw_use_bind,
        "requiredLookups": _kw_required_lookups,
    },
    type_checker=_TYPE_CHECKER,
)
_FORMATS: Final = _format_checker()


def _bounds(attribute: AttributeMetadata, default: tuple[float, float] | None) -> dict[str, float | int]:
    """``minimum``/``maximum`` from MinValue/MaxValue, else the storage type's own range."""
    low = attribute.min_value if attribute.min_value is not None else (default[0] if default else None)
    high = attribute.max_value if attribute.max_value is not None else (default[1] if default else None)
    bounds: dict[str, float | int] = {}
    for key, bound in (("minimum", low), ("maximum", high)):
        if bound is not None:
            bounds[key] = int(bound) if float(bound).is_integer() else bound
    return bounds


def _value_schema(attribute: AttributeMetadata) -> dict[str, Any] | None:
    """The JSON Schema of a column's value (reference §4.3), or None for columns the Web API cannot write."""
    kind = attribute.attribute_type
    if attribute.is_multiselect:
        return {"type": ["string", "null"], "multiOptions": list(attribute.option_values)}
    if kind in _STRING_TYPES:
        schema: dict[str, Any] = {"type": ["string", "null"]}
        if attribute.max_length is not None:
            schema["maxLength"] = attribute.max_length
        return schema
    if kind in _INTEGER_TYPES:
        return {"type": ["integer", "null"], **_bounds(attribute, INT32_RANGE if kind == "Integer" else INT64_RANGE)}
    if kind in _NUMBER_TYPES:
        return {"type": ["number", "null"], **_bounds(attribute, MONEY_RANGE if kind == "Money" else None)}
    if kind == "Boolean":
        return {"type": ["boolean", "null"]}
    if kind in _OPTION_TYPES:
        return {"type": ["integer", "null"], "enum": [*attribute.option_values, None]}
    if kind == "DateTime":
        fmt = "date" if attribute.datetime_behavior == "DateOnly" else "date-time"
        return {"type": ["string", "null"], "format": fmt, "minDate": MIN_DATAVERSE_DATE.isoformat()}
    if kind == "Uniqueidentifier":
        return {"type": ["string", "null"], "format": "uuid"}
    return None  # Virtual, EntityName, PartyList, ...: not writable as a value


@dataclass(frozen=True)
class _Compiled:
    """One table and operation: the schema, its compiled validator, and what error mapping needs."""

    schema: dict[str, Any]
    validator: Validator
    columns: Mapping[str, AttributeMetadata]  # payload key -> column (binds included)
    bind_sets: Mapping[str, tuple[str, ...]]  # bind key -> accepted entity sets


class DynamicsValidator:
    """Checks Dataverse write payloads against the tables' attribute metadata.

    Args:
        attributes: Table logical name → column logical name → metadata (``SyncMetadata.dynamics_attributes``).
        enforce_required_levels: ``"none"``: only what Dataverse itself enforces (SystemRequired not null);
            ``"create"`` (default): creates must carry every ApplicationRequired column, non-blank, as a form
            would demand (lead ``subject``/``lastname``); ``"always"``: updates may not blank them either.
        entity_sets: Lookup target → entity set, for the ``@odata.bind`` paths; defaults to
            :data:`DYNAMICS_ENTITY_SETS`, then ``<logical name>s``.
    """

    def __init__(
        self,
        attributes: Mapping[str, Mapping[str, AttributeMetadata]],
        enforce_required_levels: RequiredPolicy = "create",
        entity_sets: Mapping[str, str] | None = None,
    ) -> None:
        if enforce_required_levels not in REQUIRED_POLICIES:
            raise ValueError(
                f"enforce_required_levels must be one of {', '.join(REQUIRED_POLICIES)}, "
                f"not {enforce_required_levels!r}"
            )
        self.attributes = attributes
        self.enforce_required_levels = enforce_required_levels
        self.entity_sets = {**DYNAMICS_ENTITY_SETS, **(entity_sets or {})}
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def schema(self, entity: str, operation: Operation) -> dict[str, Any]:
        """The JSON Schema a payload for ``operation`` on ``entity`` must satisfy (for docs and debugging)."""
        return self._compile(entity, operation).schema

    def validate(
        self,
        entity: str,
        operation: Operation,
        payload: Mapping[str, Any],
        current: Mapping[str, Any] | None = None,
    ) -> list[Violation]:
        """Every rule the payload breaks, in payload order; empty when it may be sent.

        Args:
            entity: Table logical name (``lead``, ``contact``).
            operation: ``create`` (POST) or ``update`` (PATCH).
            payload: The body to send: column logical names and ``<nav>@odata.bind`` keys.
            current: The row as last read (updates), so a statuscode can be checked against a statecode
                the payload does not change. Without it, such a statuscode is not checked.

        Raises:
            KeyError: The entity has no metadata (a configuration error, not a record failure).
            ValueError: Unknown operation.
        """
        compiled = self._compile(entity, operation)
        if not isinstance(payload, Mapping):
            return [Violation("", "type", f"{entity} payload: expected an object, got {_json_kind(payload)}")]
        found: dict[tuple[str, str], Violation] = {}
        typed: set[str] = set()
        errors = sorted(compiled.validator.iter_errors(dict(payload)), key=lambda e: e.validator != "type")
        for error in errors:
            for violation in self._violations(entity, operation, compiled, payload, error):
                if violation.rule == "option_value" and violation.field in typed:
                    continue  # a wrong type already says it; "not an option" would only repeat it
                if violation.rule == "type":
                    typed.add(violation.field)
                found.setdefault((violation.field, violation.rule), violation)
        state_violation = self._status_state(entity, operation, payload, current)
        if state_violation is not None:
            found.setdefault((state_violation.field, state_violation.rule), state_violation)
        order = {key: index for index, key in enumerate(payload)}
        return sorted(found.values(), key=lambda v: (order.get(v.field, len(order)), v.field, v.rule))

    # -- schema building ---------------------------------------------------------------------------------
    def _compile(self, entity: str, operation: str) -> _Compiled:
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be 'create' or 'update', not {operation!r}")
        key = (entity, operation)
        compiled = self._compiled.get(key)
        if compiled is None:
            if entity not in self.attributes:
                raise KeyError(f"no Dynamics metadata for table {entity!r}")
            compiled = self._build(self.attributes[entity], operation)
            self._compiled[key] = compiled
        return compiled

    def _application_required(self, attribute: AttributeMetadata, operation: str) -> bool:
        if attribute.required_level != "ApplicationRequired":
            return False
        policy = self.enforce_required_levels
        return policy == "always" or (policy == "create" and operation == "create")

    def _build(self, columns: Mapping[str, AttributeMetadata], operation: str) -> _Compiled:
        properties: dict[str, Any] = {}
        patterns: dict[str, Any] = {}
        required: list[str] = []
        required_lookups: dict[str, list[str]] = {}
        by_key: dict[str, AttributeMetadata] = {}
        bind_sets: dict[str, tuple[str, ...]] = {}
        for name, attribute in columns.items():
            writable = attribute.valid_for_create if operation == "create" else attribute.valid_for_update
            app_required = self._application_required(attribute, operation)
            if attribute.is_lookup:
                binds = self._binds(attribute)
                for bind_key, sets in binds.items():
                    by_key[bind_key] = attribute
                    bind_sets[bind_key] = sets
                    pattern = f"^{re.escape(bind_key)}$"
                    patterns[pattern] = (
                        self._bind_schema(attribute, sets, operation) if writable else {"notWritable": operation}
                    )
                for wrong in {name, attribute.read_name}:
                    properties[wrong] = {"useBind": list(binds)}
                    by_key[wrong] = attribute
                if writable and app_required and operation == "create":
                    required_lookups[name] = list(binds)
                continue
            value_schema = _value_schema(attribute)
            if value_schema is None:
                continue  # left to additionalProperties: Dataverse rejects them as undeclared
            by_key[name] = attribute
            if not writable:
                properties[name] = {"notWritable": operation}
                continue
            if attribute.required_level == "SystemRequired":
                value_schema["requiredValue"] = "SystemRequired"
            elif app_required:
                value_schema["requiredValue"] = "ApplicationRequired"
                if operation == "create":
                    required.append(name)
            properties[name] = value_schema
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "patternProperties": patterns,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        if required_lookups:
            schema["requiredLookups"] = required_lookups
        _DataverseSchemaValidator.check_schema(schema)
        return _Compiled(schema, _DataverseSchemaValidator(schema, format_checker=_FORMATS), by_key, bind_sets)

    def _entity_set(self, logical_name: str) -> str:
        return self.entity_sets.get(logical_name, f"{logical_name}s")

    def _binds(self, attribute: AttributeMetadata) -> dict[str, tuple[str, ...]]:
        """Bind key → entity sets: ``<name>@odata.bind``, or one ``<name>_<target>`` per Customer target."""
        if attribute.attribute_type == "Customer":
            return {
                f"{attribute.logical_name}_{target}@odata.bind": (self._entity_set(target),)
                for target in attribute.targets
            }
        sets = tuple(self._entity_set(target) for target in attribute.targets)
        return {f"{attribute.logical_name}@odata.bind": sets}

    @staticmethod
    def _bind_schema(attribute: AttributeMetadata, sets: tuple[str, ...], operation: str) -> dict[str, Any]:
        alternatives = "|".join(re.escape(s) for s in sets) or "[A-Za-z_]+"
        schema: dict[str, Any] = {"type": ["string", "null"], "pattern": rf"^/({alternatives})\({_GUID}\)$"}
        if attribute.required_level == "SystemRequired":
            schema["requiredValue"] = "SystemRequired"
        return schema

    # -- error mapping -----------------------------------------------------------------------------------
    def _violations(
        self, entity: str, operation: str, compiled: _Compiled, payload: Mapping[str, Any], error: ValidationError
    ) -> Iterator[Violation]:
        keyword = error.validator
        if not error.path:
            yield from self._root_violations(entity, operation, compiled, payload, error)
            return
        key = str(error.path[0])
        value = payload.get(key)
        attribute = compiled.columns.get(key)
        shown = _shorten(value)
        if keyword == "type" and _is_single_choice(attribute) and value is not None and not isinstance(value, bool):
            # An option-set column given text (an unmapped label) or a fraction: what the user must hear is
            # that it is not one of the column's options, and which ones there are, not its JSON type.
            assert attribute is not None
            yield Violation(key, "option_value", _not_an_option(attribute, key, shown))
        elif keyword == "type":
            expected = error.validator_value
            kinds = [expected] if isinstance(expected, str) else list(expected)
            if attribute is not None and attribute.attribute_type == "Boolean":
                wanted = "true or false"
            else:
                wanted = " or ".join(_KIND_WORDS.get(k, k) for k in kinds)
            yield Violation(key, "type", f"{key}: expected {wanted}, got {shown} ({_json_kind(value)})")
        elif keyword == "maxLength":
            text = str(error.instance)
            units = text_length(text)
            counted = f"{units} characters"
            if units != len(text):
                counted = f"{len(text)} characters ({units} UTF-16 units)"
            yield Violation(
                key, "max_length", f"{key}: {counted}, Dynamics allows at most {error.validator_value} (MaxLength)"
            )
        elif keyword in ("minimum", "maximum"):
            word, source = (
                ("below the minimum", "MinValue") if keyword == "minimum" else ("above the maximum", "MaxValue")
            )
            yield Violation(key, keyword, f"{key}: {shown} is {word} {error.validator_value} ({source})")
        elif keyword == "enum":
            if attribute is not None and attribute.options:
                yield Violation(key, "option_value", _not_an_option(attribute, key, shown))
            else:
                allowed = _describe_options([v for v in error.validator_value if v is not None])
                yield Violation(key, "option_value", f"{key}: {shown} is not one of its options ({allowed})")
        elif keyword == "format":
            yield Violation(key, "format", f"{key}: {shown} is not {_FORMAT_WORDS.get(error.validator_value, 'valid')}")
        elif keyword == "pattern":
            sets = compiled.bind_sets.get(key, ())
            expected = " or ".join(f"/{s}(<guid>)" for s in sets)
            yield Violation(key, "format", f"{key}: {shown} is not a reference of the form {expected}")
        elif keyword == "minDate":
            yield Violation(
                key, "date_range", f"{key}: {shown} is outside the range Dynamics stores (from {error.validator_value})"
            )
        elif keyword == "notWritable":
            yield Violation(
                key,
                "not_writable",
                f"{key}: not valid for {operation} on {entity} (IsValidFor{operation.capitalize()} false); "
                f"Dataverse would silently ignore {shown}",
            )
        elif keyword == "requiredValue":
            level = error.validator_value
            what = "null" if value is None else "blank"
            yield Violation(key, "required", f"{key}: is {level} and may not be set to {what}")
        elif keyword == "useBind":
            keys = " or ".join(error.validator_value)
            yield Violation(key, "unknown_field", f"{key}: a lookup cannot be written by value; write {keys}")
        else:  # a keyword this module does not emit; still name the field rather than lose the failure
            yield Violation(key, str(keyword), f"{key}: {shown} fails {keyword}")

    def _root_violations(
        self, entity: str, operation: str, compiled: _Compiled, payload: Mapping[str, Any], error: ValidationError
    ) -> Iterator[Violation]:
        keyword = error.validator
        if keyword == "required":
            for name in error.validator_value:
                if name not in payload:
                    yield Violation(
                        name, "required", f"{name}: missing; {entity} {operation} requires it (ApplicationRequired)"
                    )
        elif keyword == "additionalProperties":
            known = compiled.schema["properties"]
            patterns = [re.compile(p) for p in compiled.schema["patternProperties"]]
            for key in payload:
                if key in known or any(p.search(key) for p in patterns):
                    continue
                if key.endswith("@odata.bind"):
                    message = f"{key}: {entity} has no lookup named {key.removesuffix('@odata.bind')!r}"
                else:
                    message = f"{key}: {entity} has no column the Web API writes by that name (Dataverse answers 400)"
                yield Violation(key, "unknown_field", message)
        elif keyword == "requiredLookup":
            column = str(error.instance)
            keys = " or ".join(error.validator_value)
            yield Violation(column, "required", f"{column}: missing; {entity} {operation} requires it, bind {keys}")
        else:
            yield Violation("", str(keyword), f"{entity} payload: {error.message}")

    # -- statuscode / statecode ---------------------------------------------------------------------------
    def _status_state(
        self, entity: str, operation: str, payload: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> Violation | None:
        """Statuscode must be a reason of the row's state (Dataverse 0x80048408).

        The state is the payload's when it may set it, else the row's ``current`` one; a new row starts in
        the lowest state (0, Open/Active), since Dataverse creates rows in their default state.
        """
        columns = self.attributes[entity]
        state_column = next((a for a in columns.values() if a.attribute_type == "State"), None)
        status_column = next((a for a in columns.values() if a.attribute_type == "Status"), None)
        if state_column is None or status_column is None:
            return None
        status = payload.get(status_column.logical_name)
        status_option = _option(status_column.options, status)
        if status_option is None or status_option.state is None:
            return None  # absent, null (the server picks the default reason) or already an option_value error
        state_name = state_column.logical_name
        may_set_state = state_column.valid_for_create if operation == "create" else state_column.valid_for_update
        if state_name in payload and may_set_state:
            state = payload[state_name]
            where = "in the payload"
        elif current is not None and current.get(state_name) is not None:
            state = current[state_name]
            where = "on the row"
        elif operation == "create" and state_column.options:
            state = min(option.value for option in state_column.options)
            where = "for a new row"
        else:
            return None
        if not _is_integer(state) or state == status_option.state:
            return None
        state_option = _option(state_column.options, state)
        state_label = f"{state} ({state_option.label})" if state_option and state_option.label else str(state)
        owner = _option(state_column.options, status_option.state)
        owner_label = f" ({owner.label})" if owner and owner.label else ""
        return Violation(
            status_column.logical_name,
            "status_state",
            f"{status_column.logical_name}: {status} ({status_option.label}) belongs to {state_name} "
            f"{status_option.state}{owner_label}, but {state_name} is {state_label} {where}",
        )


def _option(options: Sequence[OptionValue], value: Any) -> OptionValue | None:
    if not _is_integer(value):
        return None
    return next((option for option in options if option.value == value), None)


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
