"""What happened to a record: the activity log's record type and its actions (docs/architecture.md §5)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from target_mktdyn_merge.core.vocabulary import ACTIVITY_ACTIONS, ActivityAction


@dataclass(frozen=True)
class FieldChange:
    """One field's old and new value in a write (or a planned write)."""

    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data (``dataclasses.asdict`` deep-copies every value: 10% of a large merge's time)."""
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass
class Activity:
    """One decision of a run, about one person/lead/contact."""

    action: ActivityAction
    person_id: str | None = None
    entity: str | None = None
    dynamics_id: str | None = None
    direction: str | None = None  # to_dynamics | to_marketo | both | none
    fields: list[FieldChange] = field(default_factory=list)
    winner: str | None = None
    rule: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIVITY_ACTIONS:
            raise ValueError(f"unknown activity action {self.action!r}")


def activity_to_dict(activity: Activity) -> dict[str, Any]:
    """An activity as JSON-ready data (kept in an outbox entry until its write is confirmed).

    A copy, as ``asdict`` made, without its deep copy of every field value (values are JSON scalars; only
    ``details`` may hold containers).
    """
    return {
        "action": activity.action,
        "person_id": activity.person_id,
        "entity": activity.entity,
        "dynamics_id": activity.dynamics_id,
        "direction": activity.direction,
        "fields": [change.to_dict() for change in activity.fields],
        "winner": activity.winner,
        "rule": activity.rule,
        "error_code": activity.error_code,
        "error_message": activity.error_message,
        "details": copy.deepcopy(activity.details),
    }


def activity_from_dict(data: dict[str, Any]) -> Activity:
    """The inverse of :func:`activity_to_dict`."""
    return Activity(**{**data, "fields": [FieldChange(**change) for change in data.get("fields", [])]})
