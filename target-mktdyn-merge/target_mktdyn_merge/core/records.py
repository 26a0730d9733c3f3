"""Staged source records and pairs with their baselines (docs/architecture.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from target_mktdyn_merge.core.baseline import BaselineEntry
from target_mktdyn_merge.core.guards import FieldGuard
from target_mktdyn_merge.core.vocabulary import Entity


@dataclass
class Pair:
    """A link and what was last confirmed stored on each side, per field."""

    marketo_id: str
    entity: Entity
    dynamics_id: str
    authority: str
    pair_id: int | None = None
    first_merge_done: bool = False
    #: The run that did the first merge (None: not yet, or before the store recorded it).
    first_merged_run: str | None = None
    #: Linked by a real-time "Sync Person to Microsoft" that found the record existing: its first merge is on the
    #: create path (docs/architecture.md §10: blanks filled, differences reported, nothing overwritten).
    requested: bool = False
    baseline: dict[str, BaselineEntry] = field(default_factory=dict)
    guards: dict[str, FieldGuard] = field(default_factory=dict)
    #: The pair's columns as the store last held them (set by ``store.pairs``): a pair a merge left as it was
    #: (the echo of our own write) is not written again. None: not read from the store.
    stored: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StagedRecord:
    """One staged source record (the newest known version)."""

    source: str
    record_id: str
    email_norm: str | None
    source_ts: str
    deleted_at: str | None
    fields: dict[str, Any]
    changed_seq: int
    merged_seq: int

    @property
    def deleted(self) -> bool:
        """Whether the newest version is a delete."""
        return self.deleted_at is not None


@dataclass(frozen=True)
class StageResult:
    """What one staging batch did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    older_ignored: int = 0
    #: Keys of records whose source timestamp was more than FUTURE_TOLERANCE ahead (staged as of now instead).
    future: tuple[str, ...] = ()
