"""Both systems' field metadata, read once per run through their clients.

The merge needs to know what each side can write (read-only fields are never sent, docs/architecture.md §4), how
Dynamics option values map to Marketo's labels, and the types the field map is checked against.

What Marketo lets ``leads.json`` write comes from Marketo itself, never from a list of ours: describe's
``readOnly`` (never writable) and describe2's ``updateable`` (false also for company fields, which an update
silently ignores but a create sets: Marketo creates the company with the person).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from tap_dynamics_leads.metadata import AttributeMetadata
from tap_marketo_leads.schema import FieldInfo, fields_from_describe

from target_mktdyn_merge.core.normalize import OptionSet

OPTION_TYPES = frozenset({"Picklist", "State", "Status"})


@dataclass(frozen=True)
class SyncMetadata:
    """What the merge and the validation need to know about both systems."""

    marketo_fields: Mapping[str, FieldInfo]
    dynamics_attributes: Mapping[str, Mapping[str, AttributeMetadata]]  # entity -> column -> metadata
    marketo_types: Mapping[str, str] = field(init=False)
    dynamics_types: Mapping[str, Mapping[str, str]] = field(init=False)
    _options: dict[str, Mapping[str, OptionSet]] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marketo_types", {n: f.data_type for n, f in self.marketo_fields.items()})
        object.__setattr__(
            self,
            "dynamics_types",
            {
                entity: {c: a.type_name or a.attribute_type for c, a in columns.items()}
                for entity, columns in self.dynamics_attributes.items()
            },
        )

    @property
    def marketo_not_creatable(self) -> frozenset[str]:
        """Fields a create through ``leads.json`` cannot set: read-only in describe (company fields can)."""
        return frozenset(n for n, f in self.marketo_fields.items() if f.read_only)

    @property
    def marketo_read_only(self) -> frozenset[str]:
        """Fields a ``leads.json`` update cannot write: describe's ``readOnly`` or describe2's ``updateable`` false."""
        return frozenset(n for n, f in self.marketo_fields.items() if f.read_only or not f.updatable)

    def dynamics_not_updatable(self, entity: str) -> frozenset[str]:
        """Columns an update may not set (IsValidForUpdate false)."""
        return frozenset(c for c, a in self.dynamics_attributes[entity].items() if not a.valid_for_update)

    def dynamics_not_creatable(self, entity: str) -> frozenset[str]:
        """Columns a create may not set (IsValidForCreate false)."""
        return frozenset(c for c, a in self.dynamics_attributes[entity].items() if not a.valid_for_create)

    def options(self, entity: str) -> Mapping[str, OptionSet]:
        """Option sets of the entity's choice columns, by column (built once per entity: read-only)."""
        cached = self._options.get(entity)
        if cached is None:
            cached = {
                column: OptionSet({o.value: o.label for o in attribute.options})
                for column, attribute in self.dynamics_attributes[entity].items()
                if attribute.attribute_type in OPTION_TYPES or attribute.options
            }
            self._options[entity] = cached
        return cached

    @classmethod
    def from_raw(
        cls,
        describe: Iterable[Mapping[str, object]],
        attributes: Mapping[str, Iterable[AttributeMetadata]],
        describe2: Iterable[Mapping[str, object]] = (),
    ) -> SyncMetadata:
        """Build from Marketo's describe (and describe2 fields) and Dataverse attribute metadata per entity."""
        return cls(
            marketo_fields=with_updatable(fields_from_describe(describe), describe2),
            dynamics_attributes={entity: {a.logical_name: a for a in attrs} for entity, attrs in attributes.items()},
        )


def with_updatable(fields: Mapping[str, FieldInfo], describe2: Iterable[Mapping[str, object]]) -> dict[str, FieldInfo]:
    """``fields`` with describe2's ``updateable`` applied (a field describe2 does not list keeps its flag)."""
    updatable = {str(item["name"]): bool(item.get("updateable", True)) for item in describe2 if item.get("name")}
    return {
        name: replace(info, updatable=updatable[name]) if name in updatable else info for name, info in fields.items()
    }
