"""The compiled type check may only ever prove a record valid; everything else goes to jsonschema."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from target_mktdyn_merge.core.record_types import RecordTypeCheck

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": ["string", "null"], "format": "email", "description": "why"},
        "score": {"type": ["number", "null"]},
        "unsubscribed": {"type": ["boolean", "null"]},
        "updatedAt": {"type": ["string", "null"], "format": "date-time"},
    },
    "required": ["id"],
}


def agrees_with_jsonschema(schema: dict[str, Any], record: Any) -> bool:
    """What the check says never contradicts the real validator."""
    proved = RecordTypeCheck(schema).certainly_valid(record)
    return not proved or Draft7Validator(schema).is_valid(record)


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1, "email": "a@b.example", "score": 2.5, "unsubscribed": False, "updatedAt": None},
        {"id": 1, "score": 3},
        {"id": 1, "extra": {"anything": True}},
    ],
)
def test_valid_records_are_proved_valid(record: dict[str, Any]) -> None:
    assert RecordTypeCheck(SCHEMA).certainly_valid(record)
    assert Draft7Validator(SCHEMA).is_valid(record)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "1"},  # string for integer
        {"id": True},  # a bool is an int in Python, never a JSON integer
        {"id": 1, "score": True},
        {"id": 1, "unsubscribed": 0},
        {"id": 1.5},
        {"id": 1, "email": 5},
        {"email": "a@b.example"},  # required id missing
        ["not", "an", "object"],
    ],
)
def test_anything_doubtful_goes_to_the_real_validator(record: Any) -> None:
    assert not RecordTypeCheck(SCHEMA).certainly_valid(record)


@pytest.mark.parametrize(
    "property_schema",
    [
        {"type": "string", "maxLength": 3},
        {"type": "string", "enum": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string"}}},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"type": ["string", "decimal"]},
        {},
    ],
)
def test_a_schema_it_cannot_prove_disables_the_fast_path(property_schema: dict[str, Any]) -> None:
    schema = {"type": "object", "properties": {"a": property_schema}}
    check = RecordTypeCheck(schema)
    assert not check.usable
    assert not check.certainly_valid({"a": "abcdef"})


def test_closed_schema_refuses_unknown_fields() -> None:
    schema = {**SCHEMA, "additionalProperties": False}
    assert RecordTypeCheck(schema).certainly_valid({"id": 1})
    assert not RecordTypeCheck(schema).certainly_valid({"id": 1, "extra": 1})
    assert not RecordTypeCheck({**SCHEMA, "additionalProperties": {"type": "string"}}).usable


@pytest.mark.parametrize(
    "value", [0, 1, -1, 2**70, 0.0, 1.5, float("inf"), True, False, None, "", "x", [], {}, [1], {"a": 1}]
)
@pytest.mark.parametrize("json_type", ["integer", "number", "string", "boolean", "null", "array", "object"])
def test_never_contradicts_jsonschema(json_type: str, value: Any) -> None:
    schema = {"type": "object", "properties": {"v": {"type": [json_type]}}}
    assert agrees_with_jsonschema(schema, {"v": value})
