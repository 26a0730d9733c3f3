"""Dataverse table and column metadata as typed values, parsed from ``EntityDefinitions`` answers.

Type-specific properties (MaxLength, Min/Max, option sets, lookup targets, DateTimeBehavior) only
come through casts such as ``Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata``; the
client fetches those and :func:`merge_details` folds them into the common properties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: The columns asked for on the base ``Attributes`` collection.
BASE_ATTRIBUTE_SELECT = (
    "LogicalName",
    "SchemaName",
    "AttributeType",
    "AttributeTypeName",
    "RequiredLevel",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "AttributeOf",
    "IsCustomAttribute",
    "DisplayName",
)
ENTITY_SELECT = (
    "LogicalName",
    "EntitySetName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ChangeTrackingEnabled",
    "IsOptimisticConcurrencyEnabled",
)

#: Cast name -> (``$select`` of type-specific properties, ``$expand`` or None), per AttributeType.
CASTS: dict[str, tuple[str, str | None, frozenset[str]]] = {
    "StringAttributeMetadata": ("LogicalName,MaxLength,FormatName", None, frozenset({"String"})),
    "MemoAttributeMetadata": ("LogicalName,MaxLength,Format", None, frozenset({"Memo"})),
    "IntegerAttributeMetadata": ("LogicalName,MinValue,MaxValue,Format", None, frozenset({"Integer"})),
    "BigIntAttributeMetadata": ("LogicalName,MinValue,MaxValue", None, frozenset({"BigInt"})),
    "DecimalAttributeMetadata": ("LogicalName,MinValue,MaxValue,Precision", None, frozenset({"Decimal"})),
    "DoubleAttributeMetadata": ("LogicalName,MinValue,MaxValue,Precision", None, frozenset({"Double"})),
    "MoneyAttributeMetadata": ("LogicalName,MinValue,MaxValue,Precision", None, frozenset({"Money"})),
    "DateTimeAttributeMetadata": ("LogicalName,Format,DateTimeBehavior", None, frozenset({"DateTime"})),
    "PicklistAttributeMetadata": ("LogicalName", "OptionSet($select=Options)", frozenset({"Picklist"})),
    "StateAttributeMetadata": ("LogicalName", "OptionSet($select=Options)", frozenset({"State"})),
    "StatusAttributeMetadata": ("LogicalName", "OptionSet($select=Options)", frozenset({"Status"})),
    "BooleanAttributeMetadata": ("LogicalName", "OptionSet($select=TrueOption,FalseOption)", frozenset({"Boolean"})),
    "LookupAttributeMetadata": ("LogicalName,Targets", None, frozenset({"Lookup", "Customer", "Owner"})),
}
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
#: Column types that are not values of the row (or not readable through the Web API as one).
SKIPPED_TYPES = frozenset({"Virtual", "EntityName", "PartyList", "CalendarRules", "ManagedProperty"})


@dataclass(frozen=True)
class OptionValue:
    """One choice of an option set; ``state`` links a status option to its statecode."""

    value: int
    label: str
    state: int | None = None
    default_status: int | None = None


@dataclass(frozen=True)
class AttributeMetadata:
    """One column, with the properties a schema and a validator need."""

    logical_name: str
    attribute_type: str
    type_name: str = ""
    schema_name: str = ""
    required_level: str = "None"
    valid_for_create: bool = False
    valid_for_update: bool = False
    valid_for_read: bool = True
    attribute_of: str | None = None
    is_custom: bool = False
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    precision: int | None = None
    format_name: str | None = None
    datetime_behavior: str | None = None
    options: tuple[OptionValue, ...] = ()
    targets: tuple[str, ...] = ()
    #: The column's label in the user's language ("Lead Source"), for messages a user reads.
    display_name: str = ""

    @property
    def is_lookup(self) -> bool:
        """Lookups are read as ``_<name>_value`` and written with ``@odata.bind``."""
        return self.attribute_type in LOOKUP_TYPES

    @property
    def read_name(self) -> str:
        """The property name in a Web API row."""
        return f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @property
    def is_multiselect(self) -> bool:
        """Multi-select choices show as Virtual with type name MultiSelectPicklistType."""
        return self.type_name == "MultiSelectPicklistType"

    @property
    def option_values(self) -> tuple[int, ...]:
        """The allowed option values (empty when the column has no option set)."""
        return tuple(option.value for option in self.options)


@dataclass(frozen=True)
class EntityDefinition:
    """One table: its names, key, change tracking, and (when fetched) its columns."""

    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None = None
    change_tracking_enabled: bool = False
    optimistic_concurrency: bool = True
    attributes: tuple[AttributeMetadata, ...] = field(default=(), compare=False)

    def attribute(self, logical_name: str) -> AttributeMetadata | None:
        """The column named ``logical_name``, if fetched."""
        for attribute in self.attributes:
            if attribute.logical_name == logical_name:
                return attribute
        return None


def _managed(value: Any) -> Any:
    """Unwrap Dataverse's ``{"Value": ...}`` managed/enum properties."""
    if isinstance(value, Mapping):
        return value.get("Value")
    return value


def _label(label: Any) -> str:
    if not isinstance(label, Mapping):
        return "" if label is None else str(label)
    user = label.get("UserLocalizedLabel")
    if isinstance(user, Mapping) and user.get("Label") is not None:
        return str(user["Label"])
    for localized in label.get("LocalizedLabels") or ():
        if isinstance(localized, Mapping) and localized.get("Label") is not None:
            return str(localized["Label"])
    return ""


def _option(raw: Mapping[str, Any]) -> OptionValue:
    state = raw.get("State")
    default_status = raw.get("DefaultStatus")
    return OptionValue(
        value=int(raw["Value"]),
        label=_label(raw.get("Label")),
        state=None if state is None else int(state),
        default_status=None if default_status is None else int(default_status),
    )


def parse_options(option_set: Any) -> tuple[OptionValue, ...]:
    """Options of an ``OptionSet`` (picklist/state/status ``Options``; boolean True/False options)."""
    if not isinstance(option_set, Mapping):
        return ()
    options = [_option(raw) for raw in option_set.get("Options") or () if isinstance(raw, Mapping)]
    for key in ("FalseOption", "TrueOption"):
        raw = option_set.get(key)
        if isinstance(raw, Mapping) and raw.get("Value") is not None:
            options.append(_option(raw))
    return tuple(options)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_attribute(raw: Mapping[str, Any]) -> AttributeMetadata:
    """One attribute item (base or cast) as typed metadata; absent properties keep their defaults."""
    attribute_type = str(raw.get("AttributeType") or "")
    if not attribute_type and raw.get("@odata.type"):
        # "#Microsoft.Dynamics.CRM.StringAttributeMetadata" -> "String"
        attribute_type = str(raw["@odata.type"]).rsplit(".", 1)[-1].removesuffix("AttributeMetadata")
    max_length = raw.get("MaxLength")
    precision = raw.get("Precision")
    return AttributeMetadata(
        logical_name=str(raw["LogicalName"]),
        attribute_type=attribute_type,
        type_name=str(_managed(raw.get("AttributeTypeName")) or ""),
        schema_name=str(raw.get("SchemaName") or ""),
        required_level=str(_managed(raw.get("RequiredLevel")) or "None"),
        valid_for_create=bool(raw.get("IsValidForCreate", False)),
        valid_for_update=bool(raw.get("IsValidForUpdate", False)),
        valid_for_read=bool(raw.get("IsValidForRead", True)),
        attribute_of=raw.get("AttributeOf") or None,
        is_custom=bool(raw.get("IsCustomAttribute", False)),
        max_length=None if max_length is None else int(max_length),
        min_value=_number(raw.get("MinValue")),
        max_value=_number(raw.get("MaxValue")),
        precision=None if precision is None else int(precision),
        format_name=_managed(raw.get("FormatName")) or (str(raw["Format"]) if raw.get("Format") else None),
        datetime_behavior=_managed(raw.get("DateTimeBehavior")),
        options=parse_options(raw.get("OptionSet")),
        targets=tuple(str(target) for target in raw.get("Targets") or ()),
        display_name=_label(raw.get("DisplayName")),
    )


def merge_details(base: AttributeMetadata, detail: Mapping[str, Any]) -> AttributeMetadata:
    """``base`` completed with the type-specific properties of a cast answer."""
    parsed = parse_attribute({"LogicalName": base.logical_name, "AttributeType": base.attribute_type, **detail})
    changes: dict[str, Any] = {}
    for name in ("max_length", "min_value", "max_value", "precision", "format_name", "datetime_behavior"):
        value = getattr(parsed, name)
        if value is not None:
            changes[name] = value
    if parsed.options:
        changes["options"] = parsed.options
    if parsed.targets:
        changes["targets"] = parsed.targets
    return replace(base, **changes)


def parse_entity(raw: Mapping[str, Any], attributes: Iterable[AttributeMetadata] = ()) -> EntityDefinition:
    """An ``EntityDefinitions`` item (attributes from ``$expand=Attributes`` when present)."""
    expanded = tuple(parse_attribute(item) for item in raw.get("Attributes") or () if isinstance(item, Mapping))
    return EntityDefinition(
        logical_name=str(raw["LogicalName"]),
        entity_set_name=str(raw["EntitySetName"]),
        primary_id=str(raw["PrimaryIdAttribute"]),
        primary_name=raw.get("PrimaryNameAttribute"),
        change_tracking_enabled=bool(_managed(raw.get("ChangeTrackingEnabled")) or False),
        optimistic_concurrency=bool(_managed(raw.get("IsOptimisticConcurrencyEnabled", True))),
        attributes=tuple(attributes) or expanded,
    )
