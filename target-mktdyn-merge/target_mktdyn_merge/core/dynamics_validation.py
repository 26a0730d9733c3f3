"""Dataverse payloads checked against the entities' attribute metadata before they are sent.

See docs/architecture.md §6 and ``core/validation.py`` for why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import (  # type: ignore[import-untyped]
    ValidationError,
)
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from tap_dynamics_leads.metadata import AttributeMetadata, OptionValue

from target_mktdyn_merge.core.dataverse_schema import (
    _FORMATS,
    _DataverseSchemaValidator,
    _describe_options,
    _is_single_choice,
    _not_an_option,
    _value_schema,
)
from target_mktdyn_merge.core.validation import (
    _FORMAT_WORDS,
    _GUID,
    _KIND_WORDS,
    DYNAMICS_ENTITY_SETS,
    OPERATIONS,
    REQUIRED_POLICIES,
    Operation,
    RequiredPolicy,
    Violation,
    _is_integer,
    _json_kind,
    _shorten,
    text_length,
)


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
        if keyword == "type":
            yield _type_violation(key, value, attribute, error)
        elif keyword == "maxLength":
            yield _length_violation(key, error)
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


def _type_violation(key: str, value: Any, attribute: AttributeMetadata | None, error: ValidationError) -> Violation:
    """A value of the wrong JSON type, said in the column's own terms."""
    shown = _shorten(value)
    if _is_single_choice(attribute) and value is not None and not isinstance(value, bool):
        # An option-set column given text (an unmapped label) or a fraction: what the user must hear is
        # that it is not one of the column's options, and which ones there are, not its JSON type.
        assert attribute is not None
        return Violation(key, "option_value", _not_an_option(attribute, key, shown))
    expected = error.validator_value
    kinds = [expected] if isinstance(expected, str) else list(expected)
    if attribute is not None and attribute.attribute_type == "Boolean":
        wanted = "true or false"
    else:
        wanted = " or ".join(_KIND_WORDS.get(k, k) for k in kinds)
    return Violation(key, "type", f"{key}: expected {wanted}, got {shown} ({_json_kind(value)})")


def _length_violation(key: str, error: ValidationError) -> Violation:
    """Text over the column's MaxLength, counted as Dataverse counts (UTF-16 units) when that differs."""
    text = str(error.instance)
    units = text_length(text)
    counted = f"{units} characters"
    if units != len(text):
        counted = f"{len(text)} characters ({units} UTF-16 units)"
    return Violation(
        key, "max_length", f"{key}: {counted}, Dynamics allows at most {error.validator_value} (MaxLength)"
    )
