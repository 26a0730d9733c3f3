"""One planning batch: the settings a pass needs, the decisions it collects, and their atomic commit.

Each batch is one transaction, so a crash leaves either all of a batch's decisions or none. A dry run keeps
only facts about the two systems (the activity log, ``dry_run`` outbox entries, links found by matching and
agreed baselines); it never unlinks, never buries and never marks a record merged, so the first real run
after it still sees everything the dry run reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.fieldmap import FieldMap
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.policies import SyncPolicy
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.writes import PlannedWrite
from target_mktdyn_merge.store.activity_log import record_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import plan_writes, supersede
from target_mktdyn_merge.store.pairs import delete_pair, save_pairs
from target_mktdyn_merge.store.run_marks import add_marks
from target_mktdyn_merge.store.staging import mark_merged
from target_mktdyn_merge.store.tombstones import bury


@dataclass(frozen=True)
class PlanSettings:
    """What one planning pass needs to know besides the store."""

    run_id: str
    run_number: int
    dry_run: bool
    field_map: FieldMap
    policy: SyncPolicy
    metadata: SyncMetadata
    sync_filter_field: str | None
    batch_size: int = 500


@dataclass
class PlanBatch:
    """Decisions of one batch, written in one transaction."""

    activities: list[Activity] = field(default_factory=list)
    writes: list[PlannedWrite] = field(default_factory=list)
    pairs_to_save: dict[str, Pair] = field(default_factory=dict)
    pairs_to_delete: list[Pair] = field(default_factory=list)
    merged: dict[str, list[StagedRecord]] = field(default_factory=dict)
    #: (system, entity, id, deleted_at, fingerprint) of records whose counterpart was deleted.
    tombstones: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: What the pass did in this batch, by kind (``store.run_marks``): written with the decisions.
    marks: dict[str, set[str]] = field(default_factory=dict)

    def mark(self, record: StagedRecord) -> None:
        """The batch decided on this version of the record."""
        self.merged.setdefault(record.source, []).append(record)

    def report_kept(self, pair: Pair, kept: list[dict[str, Any]]) -> None:
        """Name the values a create-path first link left different in the pair's ``linked`` activity."""
        words = "; ".join(f"{d['field']}: Marketo {d['marketo']!r}, Dynamics {d['dynamics']!r}" for d in kept)
        note = f"the record already existed (create path): differences kept, not overwritten: {words}"
        linked = next(
            (
                a
                for a in reversed(self.activities)
                if a.action == "linked" and a.person_id == pair.marketo_id and a.dynamics_id == pair.dynamics_id
            ),
            None,
        )
        if linked is None:
            linked = Activity("linked", pair.marketo_id, pair.entity, pair.dynamics_id, "none")
            self.activities.append(linked)
        linked.rule = f"{linked.rule}; {note}" if linked.rule else note
        linked.details = {**linked.details, "kept_differences": kept}


def commit_batch(store: Store, settings: PlanSettings, batch: PlanBatch, counts: Counter[str]) -> None:
    """Write one batch's decisions atomically (in a dry run: only the log and the dry-run outbox)."""
    crash_point("plan-batch")
    if settings.dry_run:  # what would be written is reported now; a real write's activity waits for it
        batch.activities.extend(w.activity for w in batch.writes if w.activity is not None)
    for activity in batch.activities:
        if settings.dry_run:
            activity.details.setdefault("dry_run", True)
        counts[activity.action] += 1
    with store.transaction() as connection:
        record_activities(store, settings.run_id, batch.activities, connection, dry_run=settings.dry_run)
        if not settings.dry_run:
            supersede(connection, batch.writes)
        plan_writes(connection, settings.run_id, batch.writes, "dry_run" if settings.dry_run else "planned")
        save_pairs(connection, batch.pairs_to_save.values(), settings.run_id)
        for kind, marks in batch.marks.items():
            add_marks(connection, settings.run_id, kind, marks)
        if settings.dry_run:
            return
        for pair in batch.pairs_to_delete:
            delete_pair(connection, pair)
        for system, entity, record_id, deleted_at, print_ in batch.tombstones:
            bury(connection, system, entity, record_id, deleted_at, print_, settings.run_id)
        mark_merged(connection, batch.merged)
