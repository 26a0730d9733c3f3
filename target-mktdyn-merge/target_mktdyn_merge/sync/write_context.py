"""What both writers share: the store, the merge context, the validators, and pair/record lookups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.baseline import confirm_baseline
from target_mktdyn_merge.core.dynamics_validation import DynamicsValidator
from target_mktdyn_merge.core.marketo_validation import MarketoValidator
from target_mktdyn_merge.core.pair_merge import MergeContext, decision_activities, merge, merge_writes
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.core.validation import Violation
from target_mktdyn_merge.core.vocabulary import Entity
from target_mktdyn_merge.core.writes import OutboxEntry, PlannedWrite
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import mark, plan_writes
from target_mktdyn_merge.store.pairs import pairs_by_person, save_pair
from target_mktdyn_merge.sync.outcomes import Outcomes


@dataclass
class WriteContext:
    """Shared by the Dynamics and the Marketo writer of one run."""

    store: Store
    run_id: str
    merge_context: MergeContext
    outcomes: Outcomes
    dynamics_validator: DynamicsValidator
    marketo_validator: MarketoValidator
    #: Normalized emails this run read from Dataverse (leads and contacts) under the write lock, just before
    #: planning (the real-time path): a create for one of them needs no second lookup before it is sent.
    emails_just_read: frozenset[str] = frozenset()

    def pair_of(self, person_id: str) -> Pair | None:
        """The current pair of a person."""
        with self.store.transaction() as connection:
            return pairs_by_person(connection, [person_id]).get(person_id)

    def remerge(
        self,
        pair: Pair,
        person: Mapping[str, Any],
        row: Mapping[str, Any],
        etag: str | None,
    ) -> tuple[list[PlannedWrite], list[Activity]]:
        """Merge a pair again with fresher values; keep the baseline of what now agrees.

        Returns the writes the fresh merge calls for and the activities of its decisions.
        """
        result = merge(self.merge_context, pair, person, row)
        pair.baseline = confirm_baseline(
            pair.baseline, result, options=self.merge_context.metadata.options(pair.entity)
        )
        pair.guards = dict(result.guards)
        with self.store.transaction() as connection:
            save_pair(connection, pair, self.run_id)
        activities = [a for a in decision_activities(pair, result) if a.action != "unchanged"]
        for activity in activities:
            activity.details = {**activity.details, "remerged": True}
        return merge_writes(pair, result, etag), activities

    def follow_up(self, writes: Iterable[PlannedWrite]) -> None:
        """Queue writes a re-merge found (processed later in this run, after the current page)."""
        queued = []
        for write in writes:
            write.context = replace(write.context, follow_up=True)
            queued.append(write)
        if queued:
            with self.store.transaction() as connection:
                plan_writes(connection, self.run_id, queued, "planned")

    def replace(self, entry: OutboxEntry, replacement: PlannedWrite) -> None:
        """Put a re-merge's write in the place of an owed entry (same op id: still one write per record)."""
        entry.payload = dict(replacement.payload)
        entry.context = replace(replacement.context, activity=replacement.activity)
        with self.store.transaction() as connection:
            mark(connection, [entry.op_id], "planned", payload=entry.payload, context=entry.context)

    def violations(self, entry: OutboxEntry, found: Iterable[Violation]) -> list[tuple[str, str, str]]:
        """Violations as (field, rule, message) triples naming the record."""
        who = f"{entry.system} {entry.action} of {entry.entity or 'person'} {entry.target_id or '(new)'}"
        return [(v.field, v.rule, f"{who}: {v.message}") for v in found]


def entity_of(entry: OutboxEntry) -> Entity:
    """The Dynamics entity of an outbox entry."""
    return "contact" if entry.entity == "contact" else "lead"
