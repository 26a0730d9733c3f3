"""A write owed to one system, as planned and as stored in the outbox (docs/architecture.md §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from target_mktdyn_merge.core.activity import Activity, activity_from_dict, activity_to_dict
from target_mktdyn_merge.core.vocabulary import SIDES, WRITE_ACTIONS, Side, WriteAction


@dataclass(frozen=True)
class WrittenField:
    """One field a write carries, and what the baseline needs once the write is confirmed.

    Attributes:
        field: The Marketo field.
        column: The Dynamics column.
        kind: The field map's kind (how values compare).
        other: The other side's canonical value (the baseline's other half when the write lands).
    """

    field: str
    column: str
    kind: str
    other: Any

    def to_dict(self) -> dict[str, Any]:
        """As stored in the outbox."""
        return {"field": self.field, "column": self.column, "kind": self.kind, "other": self.other}


@dataclass(frozen=True)
class OutboxContext:
    """What a write needs besides its payload, kept with it in the outbox until it is confirmed.

    Attributes:
        person_id: The Marketo person the write is about (for a Dynamics write).
        dynamics_id: The Dynamics row the write is about (for a Marketo write).
        entity: The Dynamics entity of ``dynamics_id``.
        etag: The row version the merge read (a Dynamics update is conditional on it).
        fields: The fields written, with what the baseline needs (:class:`WrittenField`).
        follow_up: Queued by a re-merge during write-back (not re-merged a second time).
        activity_id: The outcome's activity-log id (a custom activity posted to Marketo).
        activity: What to log once the write is confirmed.
    """

    person_id: str | None = None
    dynamics_id: str | None = None
    entity: str | None = None
    etag: str | None = None
    fields: tuple[WrittenField, ...] = ()
    follow_up: bool = False
    activity_id: int | None = None
    activity: Activity | None = None

    def to_dict(self) -> dict[str, Any]:
        """As stored in the outbox (JSON); absent parts are left out."""
        data: dict[str, Any] = {
            "person_id": self.person_id,
            "dynamics_id": self.dynamics_id,
            "entity": self.entity,
            "etag": self.etag,
            "fields": [written.to_dict() for written in self.fields] if self.fields else None,
            "follow_up": self.follow_up or None,
            "activity_id": self.activity_id,
        }
        stored = {key: value for key, value in data.items() if value is not None}
        stored["activity"] = activity_to_dict(self.activity) if self.activity else None
        return stored

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutboxContext:
        """The inverse of :meth:`to_dict` (also reads entries stored before a part existed)."""
        activity = data.get("activity")
        return cls(
            person_id=_text(data.get("person_id")),
            dynamics_id=_text(data.get("dynamics_id")),
            entity=_text(data.get("entity")),
            etag=_text(data.get("etag")),
            fields=tuple(WrittenField(**written) for written in data.get("fields") or ()),
            follow_up=bool(data.get("follow_up")),
            activity_id=data.get("activity_id"),
            activity=activity_from_dict(activity) if activity else None,
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class PlannedWrite:
    """One write owed to one system."""

    system: Side
    action: WriteAction
    payload: Mapping[str, Any]
    entity: str | None = None
    target_id: str | None = None
    pair_id: int | None = None
    idempotency_key: str | None = None
    context: OutboxContext = field(default_factory=OutboxContext)
    #: What to log once the write is confirmed (in a dry run: logged at once, as what would be done).
    activity: Activity | None = None

    def __post_init__(self) -> None:
        if self.system not in SIDES or self.action not in WRITE_ACTIONS:
            raise ValueError(f"unknown write {self.system}/{self.action}")


@dataclass
class OutboxEntry:
    """One stored outbox entry."""

    op_id: int
    run_id: str
    pair_id: int | None
    system: Side
    action: WriteAction
    entity: str | None
    target_id: str | None
    idempotency_key: str | None
    payload: dict[str, Any]
    context: OutboxContext
    status: str
    attempts: int

    @property
    def activity(self) -> Activity | None:
        """The activity to log when this write is confirmed."""
        return self.context.activity
