"""Dataverse attribute metadata as JSON Schema: the keywords and formats the Dynamics validator compiles.

See docs/architecture.md §6 and ``core/validation.py`` for why payloads are checked before they are sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date
from typing import Any, Final

from jsonschema import (  # type: ignore[import-untyped]
    Draft202012Validator,
    FormatChecker,
    ValidationError,
    validators,
)
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from tap_dynamics_leads.metadata import AttributeMetadata

from target_mktdyn_merge.core.validation import (
    _GUID_RE,
    _INTEGER_TYPES,
    _MULTISELECT_RE,
    _NUMBER_TYPES,
    _OPTION_TYPES,
    _STRING_TYPES,
    INT32_RANGE,
    INT64_RANGE,
    MIN_DATAVERSE_DATE,
    MONEY_RANGE,
    _is_integer,
    _is_number,
    _parse_date,
    _parse_datetime,
    text_length,
)


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
