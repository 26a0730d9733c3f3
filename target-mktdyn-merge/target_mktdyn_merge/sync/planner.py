"""Turns what changed in the store into links, merges, creates and deletes, in batches.

The planner reads staged records whose content changed since the last merge (the "dirty" ones), decides
with the pure modules (``matching``, ``merge``, ``policies``), and records the decisions: activities in the
log, writes in the outbox, pairs and baselines in the store. Each batch is one transaction, so a crash
leaves either all of a batch's decisions or none.

A dry run sends nothing and keeps only facts about the two systems: the activity log, ``dry_run`` outbox
entries, links found by matching, and the baseline of fields both systems already agree on. It never
unlinks, never saves the ping-pong guard and never marks a record merged, so the first real run after a
series of dry runs still sees every change, delete and planned write those dry runs reported.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.baseline import confirm_baseline
from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.delete_policy import decide_delete
from target_mktdyn_merge.core.fieldmap import FieldMap
from target_mktdyn_merge.core.matching import DynamicsRow, ExistingLink, PersonRef, match_dynamics_rows, match_person
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.pair_merge import MergeContext, decision_activities, kept_differences, merge, merge_writes
from target_mktdyn_merge.core.policies import (
    SYNC_PERSON_EXISTS,
    SubjectTemplateError,
    SyncPolicy,
    asked_for_dynamics_lead,
    decide_create_in_dynamics,
    decide_create_in_marketo,
    decide_requested_create,
    lead_create_payload,
    person_create_payload,
)
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, PERSONS_STREAM, Entity
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import record_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import plan_writes, supersede
from target_mktdyn_merge.store.pairs import delete_pair, pairs_by_dynamics, pairs_by_person, save_pairs
from target_mktdyn_merge.store.tombstones import bury, fingerprint, still_buried

logger = logging.getLogger(__name__)

PERSONS = PERSONS_STREAM
ENTITIES: tuple[Entity, Entity] = ("contact", "lead")


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
class _Batch:
    """Decisions of one batch, written in one transaction."""

    activities: list[Activity] = field(default_factory=list)
    writes: list[PlannedWrite] = field(default_factory=list)
    pairs_to_save: dict[str, Pair] = field(default_factory=dict)
    pairs_to_delete: list[Pair] = field(default_factory=list)
    merged: dict[str, list[StagedRecord]] = field(default_factory=dict)
    #: (system, entity, id, deleted_at, fingerprint) of records whose counterpart was deleted.
    tombstones: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def mark(self, record: StagedRecord) -> None:
        self.merged.setdefault(record.source, []).append(record)


class _Lookups:
    """What one batch reads from the store, fetched up front in a few set-based queries.

    Looking up each person's candidates, pairs and linked rows one query at a time made planning cost a dozen
    store round trips per record, which dominated an initial sync. Staged records do not change while
    planning and pairs and tombstones change only when a batch commits, so a cache filled when a batch
    starts answers exactly as the store would; anything not prefetched falls back to the store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.staged: dict[tuple[str, str], StagedRecord | None] = {}
        self.by_email: dict[tuple[str, str], list[StagedRecord]] = {}
        self.dynamics_pairs: dict[tuple[str, str], Pair | None] = {}
        self.tombstone_ids: set[str] = set()
        self.tombstones: set[tuple[str, str, str]] = set()

    def clear(self) -> None:
        """Forget everything (a batch committed; memory stays bounded by the batch size)."""
        self.staged.clear()
        self.by_email.clear()
        self.dynamics_pairs.clear()
        self.tombstone_ids.clear()
        self.tombstones.clear()

    def prefetch_records(self, stream: str, record_ids: Iterable[str]) -> None:
        """Staged records of ``stream`` by id."""
        wanted = {i for i in record_ids if (stream, i) not in self.staged}
        found = self.store.staged_records(stream, wanted)
        for record_id in wanted:
            self.staged[(stream, record_id)] = found.get(record_id)

    def prefetch_emails(self, emails: Iterable[str | None]) -> None:
        """Live persons, contacts and leads with these emails, and the pairs of those contacts and leads."""
        wanted = {e for e in emails if e}
        rows: list[tuple[str, str]] = []
        for entity, stream in (("person", PERSONS), *((e, DYNAMICS_STREAM[e]) for e in ENTITIES)):
            missing = [e for e in wanted if (stream, e) not in self.by_email]
            found = self.store.staged_by_email(stream, missing)
            for email in missing:
                self.by_email[(stream, email)] = found.get(email, [])
            for records in found.values():
                for record in records:
                    self.staged.setdefault((stream, record.record_id), record)
                    if entity != "person":
                        rows.append((entity, record.record_id))
        missing_pairs = [key for key in rows if key not in self.dynamics_pairs]
        if missing_pairs:
            with self.store.transaction() as connection:
                pairs = pairs_by_dynamics(connection, missing_pairs)
            for key in missing_pairs:
                self.dynamics_pairs[key] = pairs.get(key)

    def prefetch_tombstones(self, record_ids: Iterable[str]) -> None:
        """Which of these records (of either system) have a tombstone."""
        wanted = sorted({str(i) for i in record_ids} - self.tombstone_ids)
        table = tables.tombstones
        with self.store.transaction() as connection:
            for start in range(0, len(wanted), 500):
                query = sa.select(table.c.survivor_system, table.c.survivor_entity, table.c.survivor_id).where(
                    table.c.survivor_id.in_(wanted[start : start + 500])
                )
                self.tombstones.update((str(a), str(b), str(c)) for a, b, c in connection.execute(query))
        self.tombstone_ids.update(wanted)

    def staged_record(self, stream: str, record_id: str) -> StagedRecord | None:
        key = (stream, str(record_id))
        if key not in self.staged:
            self.staged[key] = self.store.staged_record(stream, str(record_id))
        return self.staged[key]

    def staged_by_email(self, stream: str, email: str | None) -> list[StagedRecord]:
        if not email:
            return []
        key = (stream, email)
        if key not in self.by_email:
            self.by_email[key] = self.store.staged_by_email(stream, [email]).get(email, [])
        return self.by_email[key]

    def pairs_by_dynamics(self, entity: Entity, records: list[StagedRecord]) -> dict[tuple[str, str], Pair]:
        keys = [(entity, r.record_id) for r in records]
        missing = [key for key in keys if key not in self.dynamics_pairs]
        if missing:
            with self.store.transaction() as connection:
                found = pairs_by_dynamics(connection, missing)
            for key in missing:
                self.dynamics_pairs[key] = found.get(key)
        return {key: pair for key in keys if (pair := self.dynamics_pairs[key]) is not None}

    def may_be_buried(self, system: str, entity: str, record_id: str) -> bool:
        """False only when the prefetch saw that the record has no tombstone."""
        return record_id not in self.tombstone_ids or (system, entity, record_id) in self.tombstones


class Planner:
    """One merge pass over everything that changed since the last one."""

    def __init__(self, store: Store, settings: PlanSettings) -> None:
        self.store = store
        self.settings = settings
        self.processed_persons: set[str] = set()
        self.created_for_email: set[str] = set()
        # Links made in this run (a dry run does not save them, but must not link a row twice).
        self.run_links: dict[tuple[str, str], str] = {}
        self.counts: Counter[str] = Counter()
        self.qualified: dict[str, list[StagedRecord]] = {}
        self.merge_context = MergeContext(settings.metadata, settings.field_map, settings.run_number)
        self.lookups = _Lookups(store)
        #: Option sets per entity, built once (rebuilding them from the metadata for every pair cost ~5%).
        self.options = {entity: settings.metadata.options(entity) for entity in ENTITIES}
        #: When the first real merge that succeeded started (None: this is the initial sync). First links of
        #: persons that existed by then are the initial sync's and keep docs/architecture.md §4's rule, even
        #: when they are made in a later run (an initial sync cut short, a person staged late).
        self.initial_sync_started = _first_merge_started(store, settings.run_id)
        #: Real-time "Sync Person to Microsoft" (:meth:`run_persons`): create when missing, else only link.
        self.requested = False
        #: Persons only linked by such a request: their staged version is left for the next batch to merge.
        self.linked_only: set[str] = set()

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> Counter[str]:
        """Plan everything; return counts of activities by action."""
        self._collect_qualifications()
        for records in self.store.dirty_records(PERSONS, self.settings.batch_size):
            self._person_batch(records)
        for entity in ENTITIES:
            for records in self.store.dirty_records(DYNAMICS_STREAM[entity], self.settings.batch_size):
                self._dynamics_batch(entity, records)
        return self.counts

    def run_persons(self, person_ids: Sequence[str], *, requested: bool) -> Counter[str]:
        """Plan only these persons, changed or not (the real-time path, ``sync/person_sync.py``).

        ``requested``: Marketo's "Sync Person to Microsoft" asked for them: a person with no lead or contact gets
        one whatever ``create_in_dynamics`` says, and one whose lead or contact exists is linked and nothing more
        (no merge, so neither record changes; its staged version stays unmerged, so the next batch run merges
        the pair by the create path's rules). Without it, each person is merged exactly as a batch run would.
        """
        self.requested = requested
        self._collect_qualifications()
        records = sorted(self.store.staged_records(PERSONS, person_ids).values(), key=lambda r: r.record_id)
        for start in range(0, len(records), self.settings.batch_size):
            self._person_batch(records[start : start + self.settings.batch_size])
        return self.counts

    def _collect_qualifications(self) -> None:
        """Contacts created by qualifying a lead, by that lead's id (they move the lead's pair)."""
        for records in self.store.dirty_records(DYNAMICS_STREAM["contact"], self.settings.batch_size):
            for record in records:
                lead_id = record.fields.get("_originatingleadid_value")
                if lead_id and not record.deleted:
                    self.qualified.setdefault(str(lead_id), []).append(record)

    # -- batches --------------------------------------------------------------------------------
    def _person_batch(self, records: list[StagedRecord]) -> None:
        batch = _Batch()
        self.lookups.clear()
        with self.store.transaction() as connection:
            pairs = pairs_by_person(connection, (r.record_id for r in records))
        self._prefetch(records, pairs.values())
        for record in records:
            if record.record_id in self.processed_persons:
                continue
            if record.deleted:
                self._person_deleted(record, pairs.get(record.record_id), batch)
            else:
                self._person(record, pairs.get(record.record_id), batch)
            if record.record_id not in self.linked_only:
                batch.mark(record)
        self._commit(batch)

    def _dynamics_batch(self, entity: Entity, records: list[StagedRecord]) -> None:
        batch = _Batch()
        self.lookups.clear()
        with self.store.transaction() as connection:
            pairs = pairs_by_dynamics(connection, ((entity, r.record_id) for r in records))
        linked_persons: set[str] = set()
        for record in records:
            pair = pairs.get((entity, record.record_id))
            person_id = pair.marketo_id if pair else self.run_links.get((entity, record.record_id))
            if person_id is not None:
                linked_persons.add(person_id)
        self.lookups.prefetch_records(PERSONS, linked_persons)
        persons = [r for i in linked_persons if (r := self.lookups.staged_record(PERSONS, i)) is not None]
        with self.store.transaction() as connection:
            person_pairs = pairs_by_person(connection, linked_persons)
        self._prefetch([*records, *persons], person_pairs.values())
        for record in records:
            pair = pairs.get((entity, record.record_id))
            linked_person = pair.marketo_id if pair else self.run_links.get((entity, record.record_id))
            if record.deleted:
                if pair is not None:
                    self._dynamics_deleted(entity, record, pair, batch)
            elif linked_person is not None:
                if linked_person not in self.processed_persons:
                    person = self.lookups.staged_record(PERSONS, linked_person)
                    if person is not None and not person.deleted:
                        self._person(person, person_pairs.get(linked_person), batch)
            else:
                self._unlinked_row(entity, record, batch)
            batch.mark(record)
        self._commit(batch)

    def _prefetch(self, records: list[StagedRecord], pairs: Iterable[Pair]) -> None:
        """Fill the batch's lookups: linked rows, everything sharing an email with the batch, tombstones."""
        pairs = list(pairs)
        for entity in ENTITIES:
            self.lookups.prefetch_records(DYNAMICS_STREAM[entity], [p.dynamics_id for p in pairs if p.entity == entity])
        self.lookups.prefetch_emails(r.email_norm for r in records)
        linked = (r for key, r in self.lookups.staged.items() if r is not None and key[0] == PERSONS)
        self.lookups.prefetch_emails(r.email_norm for r in linked)
        self.lookups.prefetch_tombstones(
            [r.record_id for r in records] + [k[1] for k, r in self.lookups.staged.items() if r is not None]
        )

    def _commit(self, batch: _Batch) -> None:
        """Write one batch's decisions atomically (in a dry run: only the log and the dry-run outbox)."""
        crash_point("plan-batch")
        settings = self.settings
        if settings.dry_run:  # what would be written is reported now; a real write's activity waits for it
            batch.activities.extend(w.activity for w in batch.writes if w.activity is not None)
        for activity in batch.activities:
            if settings.dry_run:
                activity.details.setdefault("dry_run", True)
            self.counts[activity.action] += 1
        with self.store.transaction() as connection:
            record_activities(self.store, settings.run_id, batch.activities, connection, dry_run=settings.dry_run)
            if not settings.dry_run:
                supersede(connection, batch.writes)
            plan_writes(connection, settings.run_id, batch.writes, "dry_run" if settings.dry_run else "planned")
            save_pairs(connection, batch.pairs_to_save.values(), settings.run_id)
            if settings.dry_run:
                return
            for pair in batch.pairs_to_delete:
                delete_pair(connection, pair)
            for system, entity, record_id, deleted_at, print_ in batch.tombstones:
                bury(connection, system, entity, record_id, deleted_at, print_, settings.run_id)
            staged = tables.staged
            marks = [
                {"b_source": source, "b_record_id": r.record_id, "b_changed_seq": r.changed_seq}
                for source, records in batch.merged.items()
                for r in records
            ]
            if marks:  # one executemany, not a statement per record
                connection.execute(
                    sa.update(staged)
                    .where(
                        staged.c.source == sa.bindparam("b_source"),
                        staged.c.record_id == sa.bindparam("b_record_id"),
                        staged.c.changed_seq == sa.bindparam("b_changed_seq"),
                    )
                    .values(merged_seq=sa.bindparam("b_changed_seq")),
                    marks,
                )

    # -- persons --------------------------------------------------------------------------------
    def _candidates(self, email: str | None) -> list[DynamicsRow]:
        if not email:
            return []
        rows: list[DynamicsRow] = []
        for entity in ENTITIES:
            found = self.lookups.staged_by_email(DYNAMICS_STREAM[entity], email)
            if not found:
                continue
            linked = self.lookups.pairs_by_dynamics(entity, found)
            for record in found:
                pair = linked.get((entity, record.record_id))
                rows.append(
                    self._row(
                        entity, record, pair.marketo_id if pair else self.run_links.get((entity, record.record_id))
                    )
                )
        return rows

    def _row(self, entity: Entity, record: StagedRecord, linked_person: str | None) -> DynamicsRow:
        fields = record.fields
        filter_field = self.settings.sync_filter_field
        statecode = fields.get("statecode")
        return DynamicsRow(
            entity=entity,
            id=record.record_id,
            email=fields.get("emailaddress1"),
            statecode=int(statecode) if isinstance(statecode, int | float) else None,
            originating_lead_id=fields.get("_originatingleadid_value"),
            linked_person_id=linked_person,
            sync_filter=fields.get(filter_field) if filter_field else None,
        )

    def _person(self, person: StagedRecord, pair: Pair | None, batch: _Batch) -> None:
        """Match one live person, then merge, link or plan a create."""
        self.processed_persons.add(person.record_id)
        email = person.email_norm
        link = None
        if pair is not None:
            row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
            link = ExistingLink(pair.entity, pair.dynamics_id, row is not None and not row.deleted)
        qualified = []
        if pair is not None and pair.entity == "lead":
            qualified = [self._row("contact", c, None) for c in self.qualified.get(pair.dynamics_id, [])]
        same_email = self.lookups.staged_by_email(PERSONS, email)
        result = match_person(
            PersonRef(person.record_id, person.fields.get("email")),
            link,
            self._candidates(email),
            qualified_contacts=qualified,
            persons_with_email=max(1, len(same_email)),
        )
        if result.outcome in ("linked", "moved_to_contact", "new_link"):
            assert result.entity is not None
            assert result.dynamics_id is not None
            if result.outcome == "new_link" or pair is None:
                # A stale link (its row is gone) is replaced in place: same pair row, fresh baseline.
                pair = Pair(
                    person.record_id,
                    result.entity,
                    result.dynamics_id,
                    result.authority or "marketo",
                    pair_id=pair.pair_id if pair is not None else None,
                )
                batch.activities.append(
                    Activity("linked", person.record_id, result.entity, result.dynamics_id, "none", rule=result.reason)
                )
            elif result.outcome == "moved_to_contact":
                pair.entity, pair.dynamics_id = result.entity, result.dynamics_id
                pair.authority = result.authority or "dynamics"
                batch.activities.append(
                    Activity(
                        "linked",
                        person.record_id,
                        result.entity,
                        result.dynamics_id,
                        "none",
                        rule=result.reason,
                        details={"moved_from_lead": True},
                    )
                )
            self.run_links[(pair.entity, pair.dynamics_id)] = person.record_id
            if self.requested:
                self._link_only(person, pair, batch)
                return
            row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
            if row is None or row.deleted:
                return
            self._merge(person, row, pair, batch)
            return
        if result.outcome == "ambiguous":
            batch.activities.append(
                Activity(
                    "ambiguous_match",
                    person.record_id,
                    rule=result.reason,
                    details={"candidates": list(result.candidates)},
                )
            )
            return
        buried = None
        if self.lookups.may_be_buried("marketo", "person", person.record_id):
            print_ = fingerprint(self.settings.field_map, "lead", "marketo", person.fields)
            with self.store.transaction() as connection:
                buried = still_buried(connection, "marketo", "person", person.record_id, print_)
        if buried is not None:
            batch.activities.append(
                Activity(
                    "skipped",
                    person.record_id,
                    "lead",
                    None,
                    "to_dynamics",
                    rule=f"its Dynamics record was deleted ({buried}); a lead is created again only when the person "
                    "changes in Marketo",
                )
            )
            return
        if self.requested:
            decision = decide_requested_create(result)
        else:
            decision = decide_create_in_dynamics(person.fields, result, self.settings.policy)
        if not decision.create:
            batch.activities.append(
                Activity("skipped", person.record_id, "lead", None, "to_dynamics", rule=decision.reason)
            )
            return
        self._plan_lead_create(person, batch, decision.reason)

    def _link_only(self, person: StagedRecord, pair: Pair, batch: _Batch) -> None:
        """Sync Person to Microsoft on a person whose lead or contact exists: keep the link, change nothing."""
        self.linked_only.add(person.record_id)
        batch.pairs_to_save[person.record_id] = pair
        batch.activities.append(
            Activity(
                "unchanged",
                person.record_id,
                pair.entity,
                pair.dynamics_id,
                "none",
                rule=SYNC_PERSON_EXISTS.format(entity=pair.entity),
            )
        )

    def _plan_lead_create(self, person: StagedRecord, batch: _Batch, reason: str) -> None:
        settings = self.settings
        try:
            payload = lead_create_payload(
                person.fields,
                settings.policy,
                field_map=settings.field_map,
                options=self.options["lead"],
                not_creatable=settings.metadata.dynamics_not_creatable("lead"),
            )
        except SubjectTemplateError as exc:
            batch.activities.append(
                Activity(
                    "validation_failed",
                    person.record_id,
                    "lead",
                    None,
                    "to_dynamics",
                    rule="lead_subject_template",
                    error_code="template",
                    error_message=str(exc),
                )
            )
            return
        batch.writes.append(
            PlannedWrite(
                "dynamics",
                "create",
                payload,
                entity="lead",
                idempotency_key=f"lead-for-person:{person.record_id}",
                context=OutboxContext(person_id=person.record_id),
                activity=Activity(
                    "created",
                    person.record_id,
                    "lead",
                    None,
                    "to_dynamics",
                    fields=[FieldChange(k, None, v) for k, v in sorted(payload.items())],
                    rule=reason,
                ),
            )
        )

    def _merge(self, person: StagedRecord, row: StagedRecord, pair: Pair, batch: _Batch) -> None:
        """Field-by-field merge of a linked pair; plan the writes it calls for."""
        settings = self.settings
        # A first link for a person created since the initial sync who asked for a Dynamics lead: the create path.
        create_path = (
            not pair.first_merge_done
            and asked_for_dynamics_lead(person.fields, settings.policy)
            and (
                _created_since(person.fields.get("createdAt"), self.initial_sync_started)
                or _create_found_existing(self.store, person.record_id)
            )
        )
        result = merge(self.merge_context, pair, person.fields, row.fields, create_path=create_path)
        batch.activities.extend(decision_activities(pair, result))
        batch.writes.extend(merge_writes(pair, result, row.fields.get("odata_etag")))
        kept = kept_differences(result)
        if kept:
            self._report_kept(pair, kept, batch)
        # Only what both systems already agree on moves the baseline here; planned writes move it once
        # they are confirmed stored (write-back).
        previous = pair.baseline
        pair.baseline = confirm_baseline(pair.baseline, result, options=self.options[pair.entity])
        if kept and settings.dry_run:
            # A dry run must leave the first real run the same create-path first link to decide and report.
            kept_fields = {d["field"] for d in kept}
            pair.baseline = {
                **{name: entry for name, entry in pair.baseline.items() if name not in kept_fields},
                **{name: previous[name] for name in kept_fields if name in previous},
            }
            batch.pairs_to_save[person.record_id] = pair
            return
        pair.first_merge_done = True
        if not settings.dry_run:
            pair.guards = dict(result.guards)
        batch.pairs_to_save[person.record_id] = pair

    @staticmethod
    def _report_kept(pair: Pair, kept: list[dict[str, Any]], batch: _Batch) -> None:
        """Name the values a create-path first link left different in the pair's ``linked`` activity."""
        words = "; ".join(f"{d['field']}: Marketo {d['marketo']!r}, Dynamics {d['dynamics']!r}" for d in kept)
        note = f"the record already existed (create path): differences kept, not overwritten: {words}"
        linked = next(
            (
                a
                for a in reversed(batch.activities)
                if a.action == "linked" and a.person_id == pair.marketo_id and a.dynamics_id == pair.dynamics_id
            ),
            None,
        )
        if linked is None:
            linked = Activity("linked", pair.marketo_id, pair.entity, pair.dynamics_id, "none")
            batch.activities.append(linked)
        linked.rule = f"{linked.rule}; {note}" if linked.rule else note
        linked.details = {**linked.details, "kept_differences": kept}

    def _person_deleted(self, person: StagedRecord, pair: Pair | None, batch: _Batch) -> None:
        self.processed_persons.add(person.record_id)
        if pair is None:
            return
        row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
        decision = decide_delete(
            "marketo",
            pair.dynamics_id,
            self.settings.policy,
            dynamics_entity=pair.entity,
            target_exists=row is not None and not row.deleted,
        )
        self._apply_delete(decision, person.record_id, pair, batch)
        if row is not None and not row.deleted:
            print_ = fingerprint(self.settings.field_map, pair.entity, "dynamics", row.fields)
            batch.tombstones.append(("dynamics", pair.entity, pair.dynamics_id, person.deleted_at or "", print_))

    def _dynamics_deleted(self, entity: Entity, record: StagedRecord, pair: Pair, batch: _Batch) -> None:
        person = self.lookups.staged_record(PERSONS, pair.marketo_id)
        decision = decide_delete(
            "dynamics",
            pair.marketo_id,
            self.settings.policy,
            dynamics_entity=entity,
            target_exists=person is not None and not person.deleted,
        )
        self._apply_delete(decision, pair.marketo_id, pair, batch)
        self.processed_persons.add(pair.marketo_id)
        if person is not None and not person.deleted:
            print_ = fingerprint(self.settings.field_map, entity, "marketo", person.fields)
            batch.tombstones.append(("marketo", "person", pair.marketo_id, record.deleted_at or "", print_))

    def _apply_delete(self, decision: Any, person_id: str, pair: Pair, batch: _Batch) -> None:
        target_system = decision.target_side
        direction = f"to_{target_system}" if decision.action != "ignore" else "none"
        outcome = Activity(
            decision.activity,
            person_id,
            pair.entity,
            pair.dynamics_id,
            direction,
            rule=decision.reason,
            details={"deleted_side": decision.deleted_side},
        )
        if decision.action in ("delete", "flag"):
            payload = dict(decision.flag_payload) if decision.action == "flag" else {}
            if decision.action == "flag" and target_system == "marketo":
                payload = {"id": int(decision.target_id), **payload}
            batch.writes.append(
                PlannedWrite(
                    target_system,
                    decision.action,
                    payload,
                    entity=decision.target_entity,
                    target_id=decision.target_id,
                    context=OutboxContext(person_id=person_id, dynamics_id=pair.dynamics_id),
                    activity=outcome,
                )
            )
        else:
            batch.activities.append(outcome)
        if decision.activity != "unlinked":
            batch.activities.append(
                Activity(
                    "unlinked",
                    person_id,
                    pair.entity,
                    pair.dynamics_id,
                    "none",
                    rule=f"the {decision.deleted_side} side was deleted",
                )
            )
        batch.pairs_to_delete.append(pair)

    # -- Dynamics rows with no pair -------------------------------------------------------------
    def _unlinked_row(self, entity: Entity, record: StagedRecord, batch: _Batch) -> None:
        email = record.email_norm
        persons = self.lookups.staged_by_email(PERSONS, email)
        if persons:
            with self.store.transaction() as connection:
                pairs = pairs_by_person(connection, (p.record_id for p in persons))
            for person in persons:
                if person.record_id not in self.processed_persons:
                    self._person(person, pairs.get(person.record_id), batch)
            return
        if email and email in self.created_for_email:
            return
        buried = None
        if self.lookups.may_be_buried("dynamics", entity, record.record_id):
            print_ = fingerprint(self.settings.field_map, entity, "dynamics", record.fields)
            with self.store.transaction() as connection:
                buried = still_buried(connection, "dynamics", entity, record.record_id, print_)
        if buried is not None:
            batch.activities.append(
                Activity(
                    "skipped",
                    None,
                    entity,
                    record.record_id,
                    "to_marketo",
                    rule=f"its Marketo person was deleted ({buried}); it is created again only when the {entity} "
                    "changes in Dynamics",
                )
            )
            return
        rows = [
            self._row(e, r, None) for e in ENTITIES for r in self.lookups.staged_by_email(DYNAMICS_STREAM[e], email)
        ]
        if not rows:
            rows = [self._row(entity, record, None)]
        reverse = match_dynamics_rows(rows, [])
        decision = decide_create_in_marketo(reverse, self.settings.policy)
        chosen = reverse.row
        if not decision.create or chosen is None:
            if reverse.outcome == "ambiguous":
                batch.activities.append(
                    Activity(
                        "ambiguous_match",
                        None,
                        entity,
                        record.record_id,
                        "to_marketo",
                        rule=reverse.reason,
                        details={"candidates": list(reverse.candidates)},
                    )
                )
            else:
                batch.activities.append(
                    Activity("skipped", None, entity, record.record_id, "to_marketo", rule=decision.reason)
                )
            return
        if email:
            self.created_for_email.add(email)
        source = (
            record
            if chosen.id == record.record_id
            else self.lookups.staged_record(DYNAMICS_STREAM[chosen.entity], chosen.id)
        )
        fields = source.fields if source is not None else record.fields
        payload = person_create_payload(
            fields,
            chosen.entity,
            field_map=self.settings.field_map,
            options=self.options[chosen.entity],
            marketo_read_only=self.settings.metadata.marketo_not_creatable,
        )
        batch.writes.append(
            PlannedWrite(
                "marketo",
                "create",
                payload,
                entity=chosen.entity,
                target_id=None,
                idempotency_key=f"person-for-{chosen.entity}:{chosen.id}",
                context=OutboxContext(dynamics_id=chosen.id, entity=chosen.entity),
                activity=Activity(
                    "created",
                    None,
                    chosen.entity,
                    chosen.id,
                    "to_marketo",
                    fields=[FieldChange(k, None, v) for k, v in sorted(payload.items())],
                    rule=decision.reason,
                ),
            )
        )


def _first_merge_started(store: Store, run_id: str) -> str | None:
    """When the first real merge run other than ``run_id`` that succeeded started (None: none has)."""
    runs = tables.runs
    with store.transaction() as connection:
        started = connection.execute(
            sa.select(sa.func.min(runs.c.started_at)).where(
                runs.c.mode == "merge", runs.c.status == "succeeded", runs.c.run_id != run_id
            )
        ).scalar()
    return str(started) if started is not None else None


def _create_found_existing(store: Store, person_id: str) -> bool:
    """Whether a real run planned this person's lead and found one already there (the create path proper).

    That is "Sync Person to Microsoft" on an existing lead even during the initial sync: the lead appeared
    between extraction and write-back, the create was not sent (``skipped``), and the next run links it.
    """
    log = tables.activity_log
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(log.c.details).where(
                log.c.person_id == person_id,
                log.c.action == "skipped",
                log.c.direction == "to_dynamics",
                log.c.dry_run.is_(False),
            )
        ).scalars()
        return any(json.loads(str(details) or "{}").get("planned") == "create" for details in rows)


def _created_since(created_at: Any, initial_sync_started: str | None) -> bool:
    """Whether a person was created after the initial sync started (so its first link is on the create path).

    During the initial sync nothing is. A person whose ``createdAt`` is unknown (not selected, unreadable)
    counts as new once an initial sync has succeeded, as the create path's rule is the one that overwrites
    nothing.
    """
    if initial_sync_started is None:
        return False
    try:
        created = datetime.fromisoformat(str(created_at))
        started = datetime.fromisoformat(initial_sync_started)
    except ValueError:
        return True
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return created > started


def merge_run_number(store: Store) -> int:
    """How many merge runs the store has seen (the ping-pong guard's clock)."""
    with store.transaction() as connection:
        value = connection.execute(
            sa.select(sa.func.count()).select_from(tables.runs).where(tables.runs.c.mode.in_(["merge", "dry_run"]))
        ).scalar()
    return int(value or 0)
