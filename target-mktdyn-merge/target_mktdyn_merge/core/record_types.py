"""A compiled type check that lets a valid record skip the SDK's JSON Schema validation.

``jsonschema`` walks every property of every record through a fresh validator (about 70 evolutions per
Marketo person): profiled on 200,000 staged records it was three quarters of the target's staging time.
The taps' SCHEMAs are flat objects of ``type`` lists, so a record that matches them can be proved valid
with one ``isinstance`` per field. The check only ever says "certainly valid" or "ask the real validator":
a property it cannot prove (any keyword that constrains more than the type, a nested object) or a value
that fails it goes to ``jsonschema``, so what is accepted and what the error names stay exactly the SDK's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Keywords that say nothing a value can break (``format`` is not checked: the SDK's default, kept).
_ANNOTATIONS = frozenset({"type", "format", "description", "title", "default", "examples", "$comment"})
#: Top-level keywords the compiled check implements itself, besides the annotations.
_TOP_LEVEL = _ANNOTATIONS | {"properties", "required", "additionalProperties"}


#: The exact classes (compared with ``type(value)``, so ``bool`` never passes as an integer) of each JSON type.
_CERTAIN: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _property_classes(schema: Any) -> frozenset[type] | None:
    """The classes whose values certainly match ``schema``, or None when only a full validation can tell."""
    if not isinstance(schema, Mapping) or not set(schema) <= _ANNOTATIONS or "type" not in schema:
        return None
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not types or any(not isinstance(name, str) or name not in _CERTAIN for name in types):
        return None
    return frozenset(cls for name in types for cls in _CERTAIN[name])


class RecordTypeCheck:
    """``certainly_valid(record)``: True only when every field's class matches its SCHEMA type list."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.usable = (
            isinstance(schema, Mapping)
            and set(schema) <= _TOP_LEVEL
            and schema.get("type")
            in (
                "object",
                ["object"],
            )
        )
        properties = schema.get("properties") if self.usable else None
        self.classes: dict[str, frozenset[type]] = {}
        if not isinstance(properties, Mapping):
            self.usable = False
            return
        for name, property_schema in properties.items():
            classes = _property_classes(property_schema)
            if classes is None:
                self.usable = False
                return
            self.classes[name] = classes
        required = schema.get("required", [])
        self.required = tuple(required) if isinstance(required, list) else ()
        if not isinstance(required, list):
            self.usable = False
        extra = schema.get("additionalProperties", True)
        if extra is not True and extra is not False:
            self.usable = False  # a schema for extra properties: leave those to jsonschema
        self.closed = extra is False

    def certainly_valid(self, record: Any) -> bool:
        """True proves the record valid; False only means "let the real validator decide"."""
        if not self.usable or not isinstance(record, dict):
            return False
        classes = self.classes
        for name, value in record.items():
            allowed = classes.get(name)
            if allowed is None:
                if self.closed:
                    return False
                continue
            if value.__class__ not in allowed:
                return False
        return all(name in record for name in self.required)
