"""A write owed to one system, as planned and as stored in the outbox (docs/architecture.md §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from target_mktdyn_merge.core.activity import Activity, activity_from_dict
from target_mktdyn_merge.core.vocabulary import SIDES, WRITE_ACTIONS, Side, WriteAction


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
    context: Mapping[str, Any] = field(default_factory=dict)
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
    system: str
    action: str
    entity: str | None
    target_id: str | None
    idempotency_key: str | None
    payload: dict[str, Any]
    context: dict[str, Any]
    status: str
    attempts: int

    @property
    def activity(self) -> Activity | None:
        """The activity to log when this write is confirmed."""
        data = self.context.get("activity")
        return activity_from_dict(data) if data else None
