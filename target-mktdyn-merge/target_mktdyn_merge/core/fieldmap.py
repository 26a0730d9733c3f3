"""Which Marketo field pairs with which Dynamics column, per entity, and how values flow between them.

docs/architecture.md §1: "a field map in the target pairs Marketo fields with Dynamics columns per entity (sensible
default map; overridable)", and "authority and direction can be overridden per field in config". This
module holds the map's types, the default map, the parser of the target's ``field_map`` setting and a
metadata check. It is pure: the metadata to check against is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from target_mktdyn_merge.core.normalize import KINDS, Kind
from target_mktdyn_merge.core.vocabulary import ENTITIES, SIDES, Entity, Side

Direction = Literal["both", "to_dynamics", "to_marketo", "none"]
"""Which way a field's values may flow: ``none`` keeps the field mapped (matched, reported) but unwritten."""

DIRECTIONS: frozenset[str] = frozenset(get_args(Direction))


@dataclass(frozen=True)
class FieldRule:
    """One mapped field.

    Attributes:
        marketo: The Marketo REST field name (``firstName``); also the key of the field's baseline and guard.
        dynamics: The Dataverse column logical name (``firstname``).
        kind: How values are compared and converted (see ``normalize.canonical``).
        direction: Which way values may flow; a change that may not flow is reported as blocked.
        authority: The side that wins a collision on this field; ``None`` = the pair's authority (the
            entity's default, or the pair's override after a qualification).
    """

    marketo: str
    dynamics: str
    kind: Kind
    direction: Direction = "both"
    authority: Side | None = None

    def __post_init__(self) -> None:
        # Checked here as well as in the parser, so a rule built in code cannot carry a typo either.
        if not self.marketo or not self.dynamics:
            raise ValueError(f"field rule {self.marketo!r}⇄{self.dynamics!r}: both names are required")
        if self.kind not in KINDS:
            raise ValueError(f"field rule {self.marketo}: kind {self.kind!r} is not one of {_listed(KINDS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"field rule {self.marketo}: direction {self.direction!r} is not one of {_listed(DIRECTIONS)}"
            )
        if self.authority is not None and self.authority not in SIDES:
            raise ValueError(
                f"field rule {self.marketo}: authority {self.authority!r} is not marketo, dynamics or null"
            )

    def flows_to(self, side: Side) -> bool:
        """Whether this rule lets values be written to ``side``."""
        if side == "dynamics":
            return self.direction in {"both", "to_dynamics"}
        return self.direction in {"both", "to_marketo"}


@dataclass(frozen=True)
class FieldMap:
    """The rules per entity, looked up by either side's name.

    Attributes:
        lead: Rules for persons paired with a Dynamics lead.
        contact: Rules for persons paired with a Dynamics contact.
    """

    lead: tuple[FieldRule, ...]
    contact: tuple[FieldRule, ...]

    def __post_init__(self) -> None:
        for entity in ENTITIES:
            seen_marketo: dict[str, int] = {}
            seen_dynamics: dict[str, int] = {}
            for index, rule in enumerate(self.rules(entity)):
                if rule.marketo in seen_marketo:
                    raise ValueError(
                        f"field_map.{entity}[{index}].marketo: {rule.marketo!r} is already mapped "
                        f"by [{seen_marketo[rule.marketo]}]"
                    )
                if rule.dynamics in seen_dynamics:
                    raise ValueError(
                        f"field_map.{entity}[{index}].dynamics: {rule.dynamics!r} is already mapped "
                        f"by [{seen_dynamics[rule.dynamics]}]"
                    )
                seen_marketo[rule.marketo] = index
                seen_dynamics[rule.dynamics] = index

    def rules(self, entity: Entity | str) -> tuple[FieldRule, ...]:
        """The rules of an entity, in map order."""
        if entity == "lead":
            return self.lead
        if entity == "contact":
            return self.contact
        raise ValueError(f"unknown entity {entity!r}; expected lead or contact")

    def by_marketo(self, entity: Entity | str, field: str) -> FieldRule | None:
        """The rule mapping a Marketo field for an entity, if any."""
        return next((rule for rule in self.rules(entity) if rule.marketo == field), None)

    def by_dynamics(self, entity: Entity | str, column: str) -> FieldRule | None:
        """The rule mapping a Dynamics column for an entity, if any."""
        return next((rule for rule in self.rules(entity) if rule.dynamics == column), None)

    def marketo_fields(self) -> frozenset[str]:
        """Every Marketo field any entity maps (what the Marketo tap must select)."""
        return frozenset(rule.marketo for entity in ENTITIES for rule in self.rules(entity))

    def dynamics_columns(self, entity: Entity | str) -> frozenset[str]:
        """The Dynamics columns an entity maps (what the Dynamics tap must select for that stream)."""
        return frozenset(rule.dynamics for rule in self.rules(entity))


def _shared_rules() -> tuple[FieldRule, ...]:
    return (
        FieldRule("email", "emailaddress1", "email"),
        FieldRule("firstName", "firstname", "string"),
        FieldRule("lastName", "lastname", "string"),
        FieldRule("title", "jobtitle", "string"),
        FieldRule("phone", "telephone1", "phone"),
        FieldRule("mobilePhone", "mobilephone", "phone"),
        FieldRule("website", "websiteurl", "url"),
        FieldRule("address", "address1_line1", "text"),
        FieldRule("city", "address1_city", "string"),
        FieldRule("state", "address1_stateorprovince", "string"),
        FieldRule("postalCode", "address1_postalcode", "string"),
        FieldRule("country", "address1_country", "string"),
        FieldRule("leadSource", "leadsourcecode", "option"),
        FieldRule("unsubscribed", "donotbulkemail", "boolean"),
    )


DEFAULT_FIELD_MAP = FieldMap(
    lead=(
        *_shared_rules(),
        # docs/architecture.md §4: company fields are not writable through Marketo's leads API, so Dynamics → Marketo
        # only.
        FieldRule("company", "companyname", "string", direction="to_marketo"),
    ),
    contact=_shared_rules(),
)
"""The map used when the ``field_map`` setting is empty: the standard person fields of both systems."""

_RULE_KEYS = frozenset({"marketo", "dynamics", "kind", "direction", "authority"})
_OVERRIDE_KEYS = _RULE_KEYS - {"marketo"}


def parse_field_map(value: object, base: FieldMap = DEFAULT_FIELD_MAP) -> FieldMap:
    """Read the target's ``field_map`` setting.

    The setting is a JSON object (or its JSON text, as an environment variable carries it) with optional keys
    ``lead`` and ``contact``; an entity left out keeps the default rules. Each entity takes one of two forms:

    - **A list of rule objects: replaces that entity's rules entirely.** Each object has ``marketo``
      (REST field name), ``dynamics`` (column logical name) and ``kind`` (one of string, email, phone, url,
      text, boolean, integer, number, date, datetime, option), and optionally ``direction`` (both |
      to_dynamics | to_marketo | none; default both) and ``authority`` (marketo | dynamics | null; null =
      the entity's default)::

          {"lead": [{"marketo": "email", "dynamics": "emailaddress1", "kind": "email"},
                    {"marketo": "rating", "dynamics": "leadqualitycode", "kind": "option",
                     "direction": "to_marketo"}]}

    - **An object keyed by Marketo field name: tweaks the default rules.** Each value is an object with any
      of ``dynamics``, ``kind``, ``direction``, ``authority``, replacing just those keys of the default
      rule; a field the defaults lack is added (then ``dynamics`` and ``kind`` are required); ``null``
      removes the field from the map::

          {"contact": {"title": {"authority": "marketo"}, "unsubscribed": {"direction": "to_dynamics"},
                       "leadSource": null,
                       "industry": {"dynamics": "new_industry", "kind": "string"}}}

    Args:
        value: The setting: None/""/{} for the defaults, a mapping, or JSON text.
        base: The map the tweak form starts from and absent entities keep.

    Returns:
        The field map.

    Raises:
        ValueError: On any malformed entry, naming the entity, the index (or Marketo field) and the key,
            e.g. ``field_map.lead[2].kind: 'strng' is not one of ...``.
    """
    if value is None or value == "":
        return base
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"field_map: not valid JSON ({error})") from error
    if not isinstance(value, Mapping):
        raise ValueError(f"field_map: expected an object with lead/contact keys, got {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in ENTITIES)
    if unknown:
        raise ValueError(f"field_map: unknown entity {unknown[0]!r}; expected lead or contact")
    rules: dict[str, tuple[FieldRule, ...]] = {}
    for entity in ENTITIES:
        entry = value.get(entity)
        if entry is None:
            rules[entity] = base.rules(entity)
        elif isinstance(entry, Sequence) and not isinstance(entry, str):
            rules[entity] = tuple(_parse_rule(entity, index, item) for index, item in enumerate(entry))
        elif isinstance(entry, Mapping):
            rules[entity] = _apply_overrides(entity, base.rules(entity), entry)
        else:
            raise ValueError(
                f"field_map.{entity}: expected a list of rules or an object of overrides, got {type(entry).__name__}"
            )
    return FieldMap(lead=rules["lead"], contact=rules["contact"])


def _parse_rule(entity: str, index: int, item: object) -> FieldRule:
    where = f"field_map.{entity}[{index}]"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
    _check_keys(where, item, _RULE_KEYS)
    for key in ("marketo", "dynamics", "kind"):
        if key not in item:
            raise ValueError(f"{where}.{key}: required")
    return _build_rule(where, dict(item))


def _apply_overrides(
    entity: str, defaults: tuple[FieldRule, ...], overrides: Mapping[Any, Any]
) -> tuple[FieldRule, ...]:
    by_marketo = {rule.marketo: rule for rule in defaults}
    result = dict(by_marketo)
    for field_name, override in overrides.items():
        where = f"field_map.{entity}.{field_name}"
        if override is None:
            if field_name not in result:
                raise ValueError(f"{where}: cannot remove a field the map does not have")
            del result[field_name]
            continue
        if not isinstance(override, Mapping):
            raise ValueError(f"{where}: expected an object or null, got {type(override).__name__}")
        _check_keys(where, override, _OVERRIDE_KEYS)
        current = by_marketo.get(field_name)
        if current is None:
            for key in ("dynamics", "kind"):
                if key not in override:
                    raise ValueError(f"{where}.{key}: required for a field the default map lacks")
            result[field_name] = _build_rule(where, {"marketo": field_name, **override})
        else:
            merged = {
                "marketo": current.marketo,
                "dynamics": current.dynamics,
                "kind": current.kind,
                "direction": current.direction,
                "authority": current.authority,
                **override,
            }
            result[field_name] = _build_rule(where, merged)
    return tuple(result.values())


def _check_keys(where: str, item: Mapping[Any, Any], allowed: frozenset[str]) -> None:
    for key in item:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key; expected one of {_listed(allowed)}")


def _build_rule(where: str, item: dict[str, Any]) -> FieldRule:
    for key in ("marketo", "dynamics"):
        name = item.get(key)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}.{key}: expected a non-empty string, got {name!r}")
    kind = item.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind: {kind!r} is not one of {_listed(KINDS)}")
    direction = item.get("direction", "both")
    if direction not in DIRECTIONS:
        raise ValueError(f"{where}.direction: {direction!r} is not one of {_listed(DIRECTIONS)}")
    authority = item.get("authority")
    if authority is not None and authority not in SIDES:
        raise ValueError(f"{where}.authority: {authority!r} is not marketo, dynamics or null")
    return FieldRule(item["marketo"].strip(), item["dynamics"].strip(), kind, direction, authority)


# Which system data types can hold a value of each kind. Marketo's `dataType` names (leads/describe.json)
# and Dataverse's `AttributeType` names (lower-cased, a trailing "Type" of AttributeTypeName dropped).
MARKETO_TYPES_BY_KIND: Mapping[str, frozenset[str]] = {
    "string": frozenset({"string", "text", "textarea", "email", "phone", "url"}),
    "email": frozenset({"email", "string"}),
    "phone": frozenset({"phone", "string"}),
    "url": frozenset({"url", "string"}),
    "text": frozenset({"text", "textarea", "string"}),
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer", "score"}),
    "number": frozenset({"float", "currency", "percent", "integer", "score"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime"}),
    "option": frozenset({"string"}),
}
DYNAMICS_TYPES_BY_KIND: Mapping[str, frozenset[str]] = {
    "string": frozenset({"string", "memo"}),
    "email": frozenset({"string"}),
    "phone": frozenset({"string"}),
    "url": frozenset({"string"}),
    "text": frozenset({"memo", "string"}),
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer", "bigint"}),
    "number": frozenset({"decimal", "double", "money", "integer", "bigint"}),
    "date": frozenset({"datetime"}),
    "datetime": frozenset({"datetime"}),
    "option": frozenset({"picklist", "state", "status"}),
}


def validate_field_map(
    field_map: FieldMap,
    marketo_fields: Mapping[str, str],
    dynamics_columns: Mapping[str, Mapping[str, str]],
) -> list[str]:
    """Check a field map against both systems' metadata, before anything is synced.

    Catching a typo here turns a silent "field never syncs" into a configuration error at start-up.

    Args:
        field_map: The map to check.
        marketo_fields: Marketo REST field name → ``dataType`` (from ``leads/describe.json``).
        dynamics_columns: Entity (``lead``/``contact``) → column logical name → ``AttributeType`` (or
            ``AttributeTypeName``). An entity absent here is not checked against Dynamics (the run may not
            read that table); its Marketo side still is.

    Returns:
        Problems in plain words, one per line-able string; empty when the map is usable.
    """
    problems: list[str] = []
    for entity in ENTITIES:
        columns = dynamics_columns.get(entity)
        for index, rule in enumerate(field_map.rules(entity)):
            where = f"field_map.{entity}[{index}] ({rule.marketo} ⇄ {rule.dynamics})"
            for side, name in (("Marketo field", rule.marketo), ("Dynamics column", rule.dynamics)):
                if "." in name:
                    problems.append(f"{where}: {side} {name!r} contains a dot; Meltano splits select patterns on dots")
            marketo_type = marketo_fields.get(rule.marketo)
            if marketo_type is None:
                problems.append(f"{where}: Marketo has no field {rule.marketo!r}")
            elif marketo_type.casefold() not in MARKETO_TYPES_BY_KIND[rule.kind]:
                problems.append(
                    f"{where}: kind {rule.kind} does not fit Marketo type {marketo_type!r} "
                    f"(expected one of {_listed(MARKETO_TYPES_BY_KIND[rule.kind])})"
                )
            if columns is None:
                continue
            column_type = columns.get(rule.dynamics)
            if column_type is None:
                problems.append(f"{where}: the Dynamics {entity} table has no column {rule.dynamics!r}")
            elif _dynamics_type(column_type) not in DYNAMICS_TYPES_BY_KIND[rule.kind]:
                problems.append(
                    f"{where}: kind {rule.kind} does not fit Dynamics type {column_type!r} "
                    f"(expected one of {_listed(DYNAMICS_TYPES_BY_KIND[rule.kind])})"
                )
    return problems


def _dynamics_type(name: str) -> str:
    folded = name.casefold()
    return folded.removesuffix("type") if folded.endswith("type") and folded != "type" else folded


def _listed(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))
