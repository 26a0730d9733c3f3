"""Turn Marketo values (CSV text from exports, JSON from REST) into values typed per the stream schema.

Both extraction paths must produce the same record for the same person, so both go through here:
integers as int, decimals as float, booleans from ``true``/``false``, dates as ``YYYY-MM-DD`` and
date-times as UTC ``YYYY-MM-DDTHH:MM:SSZ``, and Marketo's literal ``null`` as None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

logger = logging.getLogger(__name__)

Converter = Callable[[Any], Any]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _types(prop: Mapping[str, Any]) -> set[str]:
    declared = prop.get("type", "string")
    if isinstance(declared, str):
        return {declared}
    return {str(t) for t in declared}


def to_integer(value: Any) -> int:
    """An int from JSON or CSV text (``"12"``, ``"12.0"``)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def to_number(value: Any) -> float | int:
    """A JSON number (ints stay ints so ``5`` does not become ``5.0``)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def to_boolean(value: Any) -> bool:
    """A bool from ``true``/``false`` (any case) or 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def to_datetime(value: Any) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` from Marketo's ``…Z``, ``…+0000`` or offset forms."""
    text = str(value).strip()
    moment = datetime.fromisoformat(text.replace("Z+0000", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_date(value: Any) -> str:
    """``YYYY-MM-DD`` (a date-time value keeps its calendar date as Marketo shows it)."""
    text = str(value).strip()
    return date.fromisoformat(text[:10]).isoformat()


def to_string(value: Any) -> str:
    """Text as Marketo stored it (numbers and booleans in JSON string fields become text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def base_converter(prop: Mapping[str, Any]) -> Converter:
    """The converter for a property schema (ignoring null)."""
    types = _types(prop) - {"null"}
    if "integer" in types:
        return to_integer
    if "number" in types:
        return to_number
    if "boolean" in types:
        return to_boolean
    if prop.get("format") == "date-time":
        return to_datetime
    if prop.get("format") == "date":
        return to_date
    return to_string


class ValueTyper:
    """Types the values of one record shape; a value that does not parse becomes None, logged once per field.

    Marketo has no empty string: exports write the literal ``null`` and REST omits empty fields,
    so an empty value is None on both paths (a sandbox or proxy sending ``""`` changes nothing).
    """

    def __init__(self, properties: Mapping[str, Mapping[str, Any]]) -> None:
        self._converters: dict[str, Converter] = {name: base_converter(prop) for name, prop in properties.items()}
        self._warned: set[str] = set()
        #: Text fields: where an export's ``null`` may be the word "null" (see :func:`with_null_text`).
        self.text_fields = tuple(sorted(name for name, convert in self._converters.items() if convert is to_string))

    def from_csv(self, name: str, text: str) -> Any:
        """A CSV cell: ``null`` and empty are None."""
        if text in {"null", ""}:
            return None
        return self._convert(name, text)

    def from_json(self, name: str, value: Any) -> Any:
        """A REST JSON value."""
        if value is None or value == "":
            return None
        return self._convert(name, value)

    def _convert(self, name: str, value: Any) -> Any:
        converter: Converter = self._converters.get(name) or to_string
        try:
            return converter(value)
        except (TypeError, ValueError):
            if name not in self._warned:
                self._warned.add(name)
                logger.warning(
                    "Marketo field %s: value %r does not match its type; sent as null (logged once)",
                    name,
                    str(value)[:40],
                )
            return None


#: The word Marketo's bulk export writes for an empty value, and which a person's field may also hold.
NULL_TEXT = "null"
#: Persons per ``leads.json`` call (Marketo's maximum).
REREAD_BATCH = 300


def with_null_text(
    records: Iterable[dict[str, Any]],
    typer: ValueTyper,
    reread: Callable[[list[Any], list[str]], Iterable[Mapping[str, Any]]],
    batch: int = REREAD_BATCH,
) -> Iterator[dict[str, Any]]:
    """Export records, with the word "null" restored where a person's text field really holds it.

    A bulk export writes an empty value as ``null`` and the word "null" the same way (reference §6.1), so
    from the file alone a person whose title is "null" has no title: the sync would clear the other side's
    value, and a "null" typed in Dynamics would be copied, then erased on the next run. ``leads.json`` is
    JSON and tells them apart. Records with a text field read as empty are held back and re-read by id,
    ``batch`` at a time (``reread(ids, fields)``); a field REST says is the text "null" gets it back, every
    other value stays as the export has it (a newer value is the next extraction's business). Other records
    pass straight through; the order of records within an export does not matter (the bookmark moves at the
    window's end). Costs one REST call per ``batch`` persons with an empty text field.
    """
    pending: list[dict[str, Any]] = []
    for record in records:
        if any(record.get(name) is None for name in typer.text_fields):
            pending.append(record)
            if len(pending) >= batch:
                yield from _restore_null_text(pending, typer, reread)
                pending = []
        else:
            yield record
    if pending:
        yield from _restore_null_text(pending, typer, reread)


def _restore_null_text(
    pending: list[dict[str, Any]],
    typer: ValueTyper,
    reread: Callable[[list[Any], list[str]], Iterable[Mapping[str, Any]]],
) -> Iterator[dict[str, Any]]:
    fields = sorted({name for record in pending for name in typer.text_fields if record.get(name) is None})
    ids = [record["id"] for record in pending if record.get("id") is not None]
    fresh = {str(person.get("id")): person for person in reread(ids, fields)} if ids and fields else {}
    for record in pending:
        person = fresh.get(str(record.get("id")))
        if person is not None:
            for name in fields:
                if record.get(name) is None and person.get(name) == NULL_TEXT:
                    record[name] = NULL_TEXT
        yield record
