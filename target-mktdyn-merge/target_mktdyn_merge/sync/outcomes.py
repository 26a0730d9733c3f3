"""What happens in the store when a write is confirmed, rejected or in doubt.

A confirmed write moves the pair's baseline to what the system stored (docs/architecture.md §4: the baseline is what
each system stored, not what we sent), creates the pair of a record just created, and logs the activity the plan
attached to the write. A rejected write stays owed and is retried after a backoff or replaced when its inputs
change. Every transition is one transaction; the outcomes of one API call share one (:meth:`Outcomes.batch`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.baseline import landed_entry, snapshot_baseline
from target_mktdyn_merge.core.normalize import canonical
from target_mktdyn_merge.core.pair_merge import MergeContext
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.core.vocabulary import (
    DYNAMICS_STREAM,
    FAILURE_ACTIONS,
    PERSONS_STREAM,
    Entity,
    written_stream,
)
from target_mktdyn_merge.core.writes import OutboxEntry
from target_mktdyn_merge.store.activity_log import record_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import mark
from target_mktdyn_merge.store.pairs import pairs_by_dynamics, pairs_by_person, save_pair, save_pairs
from target_mktdyn_merge.store.runs import record_confirmed_writes
from target_mktdyn_merge.sync.outcome_activities import activity_for, ignored_activity

#: Retry a rejected write after 5 min, 10, 20, ... at most 6 h.
RETRY_BASE = timedelta(minutes=5)
RETRY_CAP = timedelta(hours=6)


def retry_at(attempts: int, now: datetime | None = None) -> str:
    """When a write rejected ``attempts`` times is worth another try."""
    delay = min(RETRY_CAP, RETRY_BASE * (2 ** max(0, attempts - 1)))
    return utc_iso((now or datetime.now(UTC)) + delay)


@dataclass
class Outcomes:
    """Records outcomes of one run's write-back and counts them."""

    store: Store
    run_id: str
    merge_context: MergeContext
    counts: Counter[str] = field(default_factory=Counter)
    #: Inside :meth:`batch`: activities and confirmed op ids written when the batch ends, in one statement each.
    _held_activities: list[Activity] | None = field(default=None, init=False, repr=False)
    _held_confirmed: list[int] = field(default_factory=list, init=False, repr=False)
    #: Inside :meth:`batch`: the pairs its confirmations read and change (by person id; None: no pair), saved
    #: together when the batch ends, and the records whose writes were confirmed.
    _pairs: dict[str, Pair | None] | None = field(default=None, init=False, repr=False)
    _changed_pairs: dict[int, Pair] = field(default_factory=dict, init=False, repr=False)
    _confirmed_records: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _staged: dict[tuple[str, str], StagedRecord | None] = field(default_factory=dict, init=False, repr=False)

    @contextmanager
    def batch(self, entries: Sequence[OutboxEntry] = ()) -> Iterator[None]:
        """Record the outcomes of one API call (its ``entries``) in one transaction (see :meth:`Store.batched`).

        Their activities and "confirmed" marks are held and written together just before the commit, and so
        are the pairs they change: per record they were a statement each, the larger part of recording an
        initial sync's outcomes. The pairs and staged records the confirmations read are fetched up front.
        """
        if self._held_activities is not None:
            yield
            return
        with self.store.batched(), self.store.transaction() as connection:
            self._held_activities, self._held_confirmed = [], []
            self._pairs, self._changed_pairs, self._confirmed_records, self._staged = {}, {}, [], {}
            try:
                self._prefetch(connection, entries)
                yield
                save_pairs(connection, self._changed_pairs.values(), self.run_id)
                record_confirmed_writes(connection, self._confirmed_records)
                record_activities(self.store, self.run_id, self._held_activities, connection)
                mark(connection, self._held_confirmed, "confirmed", count_attempt=True)
            finally:
                self._held_activities, self._held_confirmed = None, []
                self._pairs, self._changed_pairs, self._confirmed_records, self._staged = None, {}, [], {}

    def _prefetch(self, connection: sa.Connection, entries: Sequence[OutboxEntry]) -> None:
        """The pairs of the entries' persons and the staged sources of their creates, in a few queries."""
        assert self._pairs is not None
        persons = {str(p) for e in entries if (p := _person_of(e)) is not None}
        found = pairs_by_person(connection, persons)
        self._pairs.update({person: found.get(person) for person in persons})
        sources: dict[str, set[str]] = {}
        for entry in entries:
            if entry.action == "create":
                stream, record_id = _create_source(entry)
                sources.setdefault(stream, set()).add(record_id)
        for stream, ids in sources.items():
            staged = self.store.staged_records(stream, ids)
            self._staged.update({(stream, i): staged.get(i) for i in ids})

    def _pair_by_person(self, connection: sa.Connection, person_id: str) -> Pair | None:
        """A person's pair, as this batch last left it."""
        if self._pairs is not None and person_id in self._pairs:
            return self._pairs[person_id]
        pair = pairs_by_person(connection, [person_id]).get(person_id)
        if self._pairs is not None:
            self._pairs[person_id] = pair
        return pair

    def _save_pair(self, connection: sa.Connection, pair: Pair) -> None:
        """Save now, or (in a batch) when the batch ends."""
        if self._pairs is None:
            save_pair(connection, pair, self.run_id)
            return
        self._pairs[pair.marketo_id] = pair
        self._changed_pairs[id(pair)] = pair

    def _staged_source(self, stream: str, record_id: str) -> StagedRecord | None:
        if (stream, record_id) in self._staged:
            return self._staged[(stream, record_id)]
        return self.store.staged_record(stream, record_id)

    def _log(self, connection: sa.Connection, activity: Activity) -> None:
        if self._held_activities is not None:
            self._held_activities.append(activity)
        else:
            record_activities(self.store, self.run_id, [activity], connection)
        self.counts[activity.action] += 1

    # -- failures --------------------------------------------------------------------------------
    def invalid(self, entry: OutboxEntry, violations: list[tuple[str, str, str]], system: str) -> None:
        """A payload that failed validation: never sent, logged with field and rule, retried later."""
        activity = activity_for(entry, "validation_failed")
        activity.fields = [FieldChange(name, None, entry.payload.get(name)) for name, _, _ in violations]
        activity.rule = "; ".join(f"{name}: {rule}" for name, rule, _ in violations)
        activity.error_code = violations[0][1] if violations else "invalid"
        activity.error_message = " | ".join(message for _, _, message in violations)
        activity.details = {**activity.details, "system": system, "action": entry.action}
        with self.store.transaction() as connection:
            mark(
                connection,
                [entry.op_id],
                "invalid",
                error_code=activity.error_code,
                error_message=activity.error_message,
                next_attempt_at=retry_at(entry.attempts + 1),
                count_attempt=True,
            )
            self._log(connection, activity)

    def failed(self, entry: OutboxEntry, code: str, message: str, *, final: bool = False) -> None:
        """A write the API rejected: stays owed (or, ``final``, given up because its target is gone)."""
        activity = activity_for(entry, "write_failed")
        activity.error_code = code
        activity.error_message = message
        with self.store.transaction() as connection:
            mark(
                connection,
                [entry.op_id],
                "cancelled" if final else "failed",
                error_code=code,
                error_message=message,
                next_attempt_at=None if final else retry_at(entry.attempts + 1),
                count_attempt=True,
            )
            self._log(connection, activity)

    def deferred(self, entry: OutboxEntry, reason: str) -> None:
        """A write that lost a race twice (412 after a re-merge): retried on the next run."""
        activity = activity_for(entry, "deferred")
        activity.rule = reason
        with self.store.transaction() as connection:
            mark(connection, [entry.op_id], "deferred", error_code="412", error_message=reason, count_attempt=True)
            self._log(connection, activity)

    def superseded(self, entry: OutboxEntry, activities: list[Activity]) -> None:
        """A write a re-merge found unnecessary or replaced; the re-merge's decisions are logged instead."""
        with self.store.transaction() as connection:
            mark(connection, [entry.op_id], "superseded")
            for activity in activities:
                self._log(connection, activity)

    def noted(self, activities: list[Activity]) -> None:
        """Log decisions a re-merge made (collisions, blocked fields) next to the write it replaced."""
        if not activities:
            return
        with self.store.transaction() as connection:
            for activity in activities:
                self._log(connection, activity)

    # -- confirmations ---------------------------------------------------------------------------
    def confirmed(
        self,
        entry: OutboxEntry,
        stored: Mapping[str, Any] | None = None,
        created_id: str | None = None,
        linked_existing: bool = False,
    ) -> None:
        """A write the system acknowledged; ``stored`` is what it is known to store afterwards.

        ``stored`` is Dataverse's ``return=representation`` row, or the Marketo person read back after the
        ``leads.json`` call; ``None`` when nothing confirms what landed (the Marketo read-back failed): the
        write is done, but the baseline of its fields does not move, so the next extraction confirms them (a
        value that landed is then in sync; one that did not is written again and checked again).

        A written field whose stored value differs from the one sent (after the merge's normalization) did
        not land: it is logged as ``write_ignored`` (field, sent and stored value; a record failure), never
        as ``updated``. Its baseline becomes what each side holds (the stored value, the other side's value):
        the divergence is then *stable*, so the write is not retried every run (no ping-pong against a system
        that will ignore it again), and it is not forgotten either: the log names it, ``mktdyn verify``
        explains the disagreement by it, and the next change on either side is merged (and checked) afresh.
        One exception: a stored value that is neither the one sent nor the one the record held before the
        write (someone edited it between the write and the read-back) keeps its old baseline, so the next
        merge sees that edit as a change and merges it instead of keeping it as a stable divergence.
        """
        activity = entry.activity
        ignored = [] if stored is None or linked_existing or entry.action == "delete" else self._ignored(entry, stored)
        with self.store.transaction() as connection:
            if entry.action == "update":
                self._move_baseline(connection, entry, stored, self._moved_meanwhile(entry, ignored))
                if entry.target_id:  # overlapping runs re-read this record before merging it (store.stale_records)
                    written = (written_stream(entry.system, entry.entity), entry.target_id)
                    if self._pairs is not None:
                        self._confirmed_records.append(written)
                    else:
                        record_confirmed_writes(connection, [written])
            elif entry.action == "create" and created_id is not None:
                self._pair_created(connection, entry, created_id, stored or {}, linked_existing=linked_existing)
            if self._held_activities is not None:
                self._held_confirmed.append(entry.op_id)
            else:
                mark(connection, [entry.op_id], "confirmed", count_attempt=True)
            if entry.system == "marketo" and entry.action == "create" and created_id is not None:
                person_id: str | None = created_id
            else:
                person_id = None
            if activity is not None:
                if person_id is not None:
                    activity.person_id = person_id
                if entry.system == "dynamics" and entry.action == "create" and created_id is not None:
                    activity.dynamics_id = created_id
                if linked_existing:
                    activity.action = "linked"
                    activity.rule = f"{activity.rule}; it already existed, so it was linked, not created"
                # The write it confirms, so the log accounts for every write (as failures already do).
                activity.details = {**activity.details, "op_id": entry.op_id}
                if stored is None and entry.system == "marketo" and entry.action == "update":
                    activity.details = {**activity.details, "read_back": "unavailable: the next extraction confirms"}
                names = {name for name, _, _ in ignored}
                kept = [change for change in activity.fields if change.field not in names]
                if kept or not ignored or activity.action != "updated":
                    activity.fields = kept if activity.action == "updated" else activity.fields
                    self._log(connection, activity)
            if ignored:
                self._log(connection, ignored_activity(entry, ignored, person_id, created_id))

    def _moved_meanwhile(self, entry: OutboxEntry, ignored: list[tuple[str, Any, Any]]) -> frozenset[str]:
        """Ignored fields whose stored value is not the pre-write one (from the planned activity) either."""
        if not ignored or entry.activity is None:
            return frozenset()
        before = {change.field: change.old for change in entry.activity.fields}
        entity = entry.entity or entry.context.entity or "lead"
        options = self.merge_context.metadata.options(entity)
        moved = set()
        for name, _, landed in ignored:
            rule = (
                self.merge_context.field_map.by_marketo(entity, name)
                if entry.system == "marketo"
                else self.merge_context.field_map.by_dynamics(entity, name)
            )
            if rule is None or name not in before:
                continue
            option_set = options.get(rule.dynamics)
            if canonical(rule.kind, landed, option_set) != canonical(rule.kind, before[name], option_set):
                moved.add(name)
        return frozenset(moved)

    def _ignored(self, entry: OutboxEntry, stored: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
        """(name, sent, stored) of every mapped field sent whose stored value differs after normalization."""
        entity = entry.entity or entry.context.entity or "lead"
        options = self.merge_context.metadata.options(entity)
        found = []
        for rule in self.merge_context.field_map.rules(entity):
            name = rule.marketo if entry.system == "marketo" else rule.dynamics
            if name not in entry.payload or name not in stored:
                continue
            option_set = options.get(rule.dynamics)
            sent, landed = entry.payload[name], stored[name]
            if canonical(rule.kind, sent, option_set) != canonical(rule.kind, landed, option_set):
                found.append((name, sent, landed))
        return found

    def _move_baseline(
        self,
        connection: sa.Connection,
        entry: OutboxEntry,
        stored: Mapping[str, Any] | None,
        keep: frozenset[str] = frozenset(),
    ) -> None:
        """Move the written fields' baseline to what the system stored (a field it ignored included).

        Dataverse's representation lacking a column counts as stored as sent; a Marketo write with no
        read-back (``stored`` None) moves nothing, nor do fields in ``keep`` (see :meth:`confirmed`).
        """
        if stored is None and entry.system == "marketo":
            return
        landed = stored or {}
        pair = self._pair_of(connection, entry)
        if pair is None:
            return
        options = self.merge_context.metadata.options(pair.entity)
        for written in entry.context.fields:
            name = written.column if entry.system == "dynamics" else written.field
            if name in keep:
                continue
            value = landed.get(name, entry.payload.get(name))
            option_set = options.get(written.column)
            pair.baseline[written.field] = landed_entry(entry.system, written.kind, value, written.other, option_set)
        self._save_pair(connection, pair)

    def _pair_of(self, connection: sa.Connection, entry: OutboxEntry) -> Pair | None:
        person_id = _person_of(entry)
        if person_id is None:
            return None
        pair = self._pair_by_person(connection, str(person_id))
        expected = entry.target_id if entry.system == "dynamics" else entry.context.dynamics_id
        return pair if pair is not None and pair.dynamics_id == expected else None

    def _pair_created(
        self,
        connection: sa.Connection,
        entry: OutboxEntry,
        created_id: str,
        stored: Mapping[str, Any],
        *,
        linked_existing: bool = False,
    ) -> None:
        """Link a record just created to its source, with a baseline of both as stored.

        A record that already existed (the create was refused because its email is taken) was not written
        by us: it holds its own values, not the payload, so the pair gets no baseline and its first merge
        decides as any first link does (the authority wins a collision; a blank never overwrites a value).
        A baseline of the payload would make every field where the record differs look changed on its side.
        """
        context = self.merge_context
        if entry.system == "dynamics":
            person_id = str(entry.context.person_id)
            person = self._staged_source(PERSONS_STREAM, person_id)
            marketo_fields = person.fields if person is not None else {}
            dynamics_fields = {**entry.payload, **stored}
            pair = Pair(person_id, "lead", created_id, "marketo")
        else:
            entity: Entity = "contact" if entry.context.entity == "contact" else "lead"
            dynamics_id = str(entry.context.dynamics_id)
            row = self._staged_source(DYNAMICS_STREAM[entity], dynamics_id)
            dynamics_fields = row.fields if row is not None else {}
            marketo_fields = {**entry.payload, **stored}
            pair = Pair(created_id, entity, dynamics_id, "marketo" if entity == "lead" else "dynamics")
        if self._pair_by_person(connection, pair.marketo_id) is not None or self._linked_dynamics(connection, pair):
            return  # linked meanwhile (an earlier confirmation of the same record): keep that link
        if linked_existing:
            self._save_pair(connection, pair)
            return
        pair.baseline = snapshot_baseline(
            pair.entity, marketo_fields, dynamics_fields, context.field_map, context.metadata.options(pair.entity)
        )
        pair.first_merge_done, pair.first_merged_run = True, self.run_id
        self._save_pair(connection, pair)

    def _linked_dynamics(self, connection: sa.Connection, pair: Pair) -> bool:
        """Whether the pair's lead or contact is linked already (in the store, or earlier in this batch)."""
        if self._pairs is not None and any(
            p is not None and (p.entity, p.dynamics_id) == (pair.entity, pair.dynamics_id)
            for p in self._changed_pairs.values()
        ):
            return True
        return bool(pairs_by_dynamics(connection, [(pair.entity, pair.dynamics_id)]))

    def failures(self) -> int:
        """Record-level failures so far (validation and rejected writes)."""
        return sum(self.counts[action] for action in FAILURE_ACTIONS)


def _person_of(entry: OutboxEntry) -> str | None:
    """The Marketo person a write concerns (a Dynamics write's from its context, a Marketo write's target)."""
    person = entry.context.person_id if entry.system == "dynamics" else entry.target_id
    return None if person is None else str(person)


def _create_source(entry: OutboxEntry) -> tuple[str, str]:
    """(stream, id) of the staged record a create was planned from (a lead's person, a person's lead/contact)."""
    if entry.system == "dynamics":
        return PERSONS_STREAM, str(entry.context.person_id)
    entity = "contact" if entry.context.entity == "contact" else "lead"
    return DYNAMICS_STREAM[entity], str(entry.context.dynamics_id)
