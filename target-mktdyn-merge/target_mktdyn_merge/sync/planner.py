"""Turns what changed in the store into links, merges, creates and deletes, in batches.

The planner reads staged records whose content changed since the last merge (the "dirty" ones), decides
with the pure modules (``matching``, ``merge``, ``policies``), and records the decisions: activities in the
log, writes in the outbox, pairs and baselines in the store. A batch reads through ``plan_lookups``, collects
its decisions in a ``plan_batch.PlanBatch`` committed in one transaction, and builds creates and deletes with
``plan_creates`` and ``plan_deletes``.

A dry run sends nothing and keeps only facts about the two systems: the activity log, ``dry_run`` outbox
entries, links found by matching, and the baseline of fields both systems already agree on. It never
unlinks, never saves the ping-pong guard and never marks a record merged, so the first real run after a
series of dry runs still sees every change, delete and planned write those dry runs reported.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.baseline import confirm_baseline
from target_mktdyn_merge.core.matching import (
    DynamicsRow,
    ExistingLink,
    MatchResult,
    PersonRef,
    match_dynamics_rows,
    match_person,
)
from target_mktdyn_merge.core.pair_merge import MergeContext, decision_activities, kept_differences, merge, merge_writes
from target_mktdyn_merge.core.policies import (
    CreateDecision,
    asked_for_dynamics_lead,
    decide_create_in_dynamics,
    decide_create_in_marketo,
)
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.vocabulary import (
    CONTACTS_FIRST,
    DYNAMICS_STREAM,
    ORIGINATING_LEAD,
    PERSONS_STREAM,
    Entity,
)
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import changed_counts
from target_mktdyn_merge.store.pairs import pairs_by_dynamics, pairs_by_person, persons_linked_to
from target_mktdyn_merge.store.run_marks import CREATE_EMAIL, PERSON, clear_marks
from target_mktdyn_merge.store.runs import first_merge_started
from target_mktdyn_merge.store.runs import merge_run_number as store_merge_run_number
from target_mktdyn_merge.store.tombstones import fingerprint, still_buried
from target_mktdyn_merge.sync.plan_batch import PlanBatch, PlanSettings, commit_batch
from target_mktdyn_merge.sync.plan_creates import created_since, lead_create, person_create
from target_mktdyn_merge.sync.plan_deletes import dynamics_deleted, person_deleted
from target_mktdyn_merge.sync.plan_lookups import BatchLookups, dynamics_row
from target_mktdyn_merge.sync.plan_marks import PassMarks
from target_mktdyn_merge.sync.progress import Progress

logger = logging.getLogger(__name__)

__all__ = ["PlanSettings", "Planner", "merge_run_number"]


class Planner:
    """One merge pass over everything that changed since the last one."""

    def __init__(self, store: Store, settings: PlanSettings) -> None:
        self.store = store
        self.settings = settings
        #: Persons this pass decided on, and emails it planned a person's create for (sync/plan_marks.py).
        self.processed_persons = PassMarks(store, settings.run_id, PERSON)
        self.created_for_email = PassMarks(store, settings.run_id, CREATE_EMAIL)
        #: Links made in the current batch; earlier batches' are saved pairs (a dry run saves its links too).
        self.run_links: dict[tuple[str, str], str] = {}
        self.counts: Counter[str] = Counter()
        self.qualified: dict[str, list[StagedRecord]] = {}
        self.merge_context = MergeContext(settings.metadata, settings.field_map, settings.run_number)
        self.lookups = BatchLookups(store)
        #: Option sets per entity, built once (rebuilding them from the metadata for every pair cost ~5%).
        self.options = {entity: settings.metadata.options(entity) for entity in CONTACTS_FIRST}
        #: When the first real merge that succeeded started (None: this is the initial sync). First links of
        #: persons that existed by then are the initial sync's and keep docs/architecture.md §4's rule, even
        #: when they are made in a later run (an initial sync cut short, a person staged late).
        with store.transaction() as connection:
            self.initial_sync_started = first_merge_started(connection, settings.run_id)
        #: Persons linked but deliberately not merged (``plan_requested``): left for the next batch to merge.
        self.linked_only: set[str] = set()

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> Counter[str]:
        """Plan everything; return counts of activities by action."""
        self._begin()
        progress = Progress(logger, "planning", sum(changed_counts(self.store).values()), "changed records")
        for records in self.store.dirty_records(PERSONS_STREAM, self.settings.batch_size):
            self._person_batch(records)
            progress.advance(len(records))
        for entity in CONTACTS_FIRST:
            for records in self.store.dirty_records(DYNAMICS_STREAM[entity], self.settings.batch_size):
                self._dynamics_batch(entity, records)
                progress.advance(len(records))
        self._end()
        return self.counts

    def _begin(self) -> None:
        """Start a pass: delete the marks of passes no longer running; collect the qualified contacts."""
        with self.store.transaction() as connection:
            clear_marks(connection, self.settings.run_id)
        self._collect_qualifications()

    def _end(self) -> None:
        """End a pass: its marks are deleted (memory and store stay bounded)."""
        with self.store.transaction() as connection:
            clear_marks(connection, self.settings.run_id)

    def _commit(self, batch: PlanBatch) -> None:
        """Write the batch's decisions and marks; then only its saved pairs remember its links."""
        batch.marks = {PERSON: self.processed_persons.new, CREATE_EMAIL: self.created_for_email.new}
        commit_batch(self.store, self.settings, batch, self.counts)
        self.processed_persons.committed()
        self.created_for_email.committed()
        self.run_links.clear()

    def _collect_qualifications(self) -> None:
        """Contacts created by qualifying a lead, by that lead's id (they move the lead's pair)."""
        contacts = self.store.dirty_records(
            DYNAMICS_STREAM["contact"], self.settings.batch_size, with_text_in=ORIGINATING_LEAD
        )
        for records in contacts:
            for record in records:
                lead_id = record.fields.get(ORIGINATING_LEAD)
                if lead_id and not record.deleted:
                    self.qualified.setdefault(str(lead_id), []).append(record)

    # -- batches --------------------------------------------------------------------------------
    def _person_batch(self, records: list[StagedRecord]) -> None:
        batch = PlanBatch()
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
        """Leads or contacts that changed: deletes, their linked persons not decided yet, unlinked rows.

        Most linked persons were decided by the person batches already (an initial sync: all of them), so
        whole pairs (their baselines) are read only for a deleted row and for a person still to decide.
        """
        batch = PlanBatch()
        self.lookups.clear()
        keys = [(entity, r.record_id) for r in records]
        with self.store.transaction() as connection:
            links = persons_linked_to(connection, keys)
            pairs = pairs_by_dynamics(connection, [(entity, r.record_id) for r in records if r.deleted])
        linked = {key: who for key in keys if (who := links.get(key) or self.run_links.get(key)) is not None}
        self.processed_persons.prefetch(linked.values())
        to_decide = {person for person in linked.values() if person not in self.processed_persons}
        self.lookups.prefetch_records(PERSONS_STREAM, to_decide | {pair.marketo_id for pair in pairs.values()})
        persons = [r for i in to_decide if (r := self.lookups.staged_record(PERSONS_STREAM, i)) is not None]
        with self.store.transaction() as connection:
            person_pairs = pairs_by_person(connection, to_decide)
        linked_rows = {(r.source, r.record_id) for r, key in zip(records, keys, strict=True) if key in linked}
        self._prefetch([*records, *persons], person_pairs.values(), linked_rows)
        for record, key in zip(records, keys, strict=True):
            linked_person = linked.get(key)
            if record.deleted:
                if (pair := pairs.get(key)) is not None:
                    self._dynamics_deleted(entity, record, pair, batch)
            elif linked_person is not None:
                if linked_person not in self.processed_persons:
                    person = self.lookups.staged_record(PERSONS_STREAM, linked_person)
                    if person is not None and not person.deleted:
                        self._person(person, person_pairs.get(linked_person), batch)
            else:
                self._unlinked_row(entity, record, batch)
            batch.mark(record)
        self._commit(batch)

    def _prefetch(
        self, records: list[StagedRecord], pairs: Iterable[Pair], linked_rows: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Fill the batch's lookups: linked rows, what matching will read by email, tombstones.

        Only records that matching looks up by email have their email's records read: persons without a live
        link and Dynamics rows not in ``linked_rows`` ((stream, id): a live link decides the match; a rerun's
        echoes of our own writes are all linked, and reading their emails' records was a fifth of planning them).
        """
        pairs = list(pairs)
        self.lookups.decoded(records)
        for entity in CONTACTS_FIRST:
            self.lookups.prefetch_records(DYNAMICS_STREAM[entity], [p.dynamics_id for p in pairs if p.entity == entity])
        settled = {(PERSONS_STREAM, p.marketo_id) for p in pairs if self._link_alive(p)} | set(linked_rows)
        self.lookups.prefetch_emails(r.email_norm for r in records if (r.source, r.record_id) not in settled)
        persons = [r for key, r in self.lookups.staged.items() if r is not None and key[0] == PERSONS_STREAM]
        to_match = [r for r in persons if (PERSONS_STREAM, r.record_id) not in settled]
        self.lookups.prefetch_emails(r.email_norm for r in to_match)
        self.lookups.batch_persons.update(r.record_id for r in [*records, *persons] if r.source == PERSONS_STREAM)
        self.lookups.prefetch_tombstones(
            [r.record_id for r in records] + [k[1] for k, r in self.lookups.staged.items() if r is not None]
        )
        self.processed_persons.prefetch(
            [r.record_id for r in records if r.source == PERSONS_STREAM]
            + [key[1] for key in self.lookups.staged if key[0] == PERSONS_STREAM]
        )
        self.created_for_email.prefetch(r.email_norm for r in records if r.source != PERSONS_STREAM)

    # -- persons --------------------------------------------------------------------------------
    def _candidates(self, email: str | None) -> list[DynamicsRow]:
        if not email:
            return []
        rows: list[DynamicsRow] = []
        for entity in CONTACTS_FIRST:
            found = self.lookups.staged_by_email(DYNAMICS_STREAM[entity], email)
            if not found:
                continue
            linked = self.lookups.linked_persons(entity, found)
            for record in found:
                key = (entity, record.record_id)
                linked_person = linked[key] if key in linked else self.run_links.get(key)
                rows.append(dynamics_row(entity, record, linked_person, self.settings.sync_filter_field))
        return rows

    def _link_alive(self, pair: Pair) -> bool:
        """Whether the pair's lead or contact is staged and not deleted (its link decides the match)."""
        row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
        return row is not None and not row.deleted

    def _person(self, person: StagedRecord, pair: Pair | None, batch: PlanBatch) -> None:
        """Match one live person, then merge, link or plan a create.

        A live link decides the match (``match_person``): the email's candidates are read only without one.
        """
        self.processed_persons.add(person.record_id)
        email = person.email_norm
        link = None
        if pair is not None:
            link = ExistingLink(pair.entity, pair.dynamics_id, self._link_alive(pair))
        qualified = []
        if pair is not None and pair.entity == "lead":
            qualified = [
                dynamics_row("contact", c, None, self.settings.sync_filter_field)
                for c in self.qualified.get(pair.dynamics_id, [])
            ]
        by_link = link is not None and link.row_exists
        result = match_person(
            PersonRef(person.record_id, person.fields.get("email")),
            link,
            [] if by_link else self._candidates(email),
            qualified_contacts=qualified,
            persons_with_email=1 if by_link else max(1, len(self.lookups.staged_by_email(PERSONS_STREAM, email))),
        )
        if result.outcome in ("linked", "moved_to_contact", "new_link"):
            self._matched(person, pair, result, batch)
        elif result.outcome == "ambiguous":
            batch.activities.append(
                Activity(
                    "ambiguous_match",
                    person.record_id,
                    rule=result.reason,
                    details={"candidates": list(result.candidates)},
                )
            )
        else:
            self._unmatched(person, result, batch)

    def _matched(self, person: StagedRecord, pair: Pair | None, result: MatchResult, batch: PlanBatch) -> None:
        """A person matched to a lead or contact: link (or move the link), then merge the pair."""
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
        row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
        if row is not None and not row.deleted:
            self._merge(person, row, pair, batch)

    def _unmatched(self, person: StagedRecord, result: MatchResult, batch: PlanBatch) -> None:
        """A person with no lead or contact: plan its lead's create when the policy asks for one."""
        buried = self._buried("marketo", "person", "lead", person)
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
        decision = self._create_decision(person, result)
        if not decision.create:
            batch.activities.append(
                Activity("skipped", person.record_id, "lead", None, "to_dynamics", rule=decision.reason)
            )
            return
        planned = lead_create(person, self.settings, self.options["lead"], decision.reason)
        if isinstance(planned, Activity):
            batch.activities.append(planned)
        else:
            batch.writes.append(planned)

    def _create_decision(self, person: StagedRecord, result: MatchResult) -> CreateDecision:
        """Whether an unmatched person gets a lead: ``create_in_dynamics`` decides (a real-time request overrides)."""
        return decide_create_in_dynamics(person.fields, result, self.settings.policy)

    def _buried(self, system: str, entity: str, mapped_as: Entity, record: StagedRecord) -> str | None:
        """When the record's counterpart was deleted and the record has not changed since (else None).

        ``mapped_as`` is the entity whose field map gives the record's fingerprint (a person's: the lead's).
        """
        if not self.lookups.may_be_buried(system, entity, record.record_id):
            return None
        print_ = fingerprint(self.settings.field_map, mapped_as, system, record.fields)
        with self.store.transaction() as connection:
            return still_buried(connection, system, entity, record.record_id, print_)

    def _merge(self, person: StagedRecord, row: StagedRecord, pair: Pair, batch: PlanBatch) -> None:
        """Field-by-field merge of a linked pair; plan the writes it calls for."""
        settings = self.settings
        # A first link for a person created since the initial sync who asked for a Dynamics lead, or linked by a
        # real-time Sync Person to Microsoft that found the record existing: the create path.
        create_path = not pair.first_merge_done and (
            pair.requested
            or (
                asked_for_dynamics_lead(person.fields, settings.policy)
                and (
                    created_since(person.fields.get("createdAt"), self.initial_sync_started)
                    or self.lookups.create_found_existing(person.record_id)
                )
            )
        )
        result = merge(self.merge_context, pair, person.fields, row.fields, create_path=create_path)
        batch.activities.extend(decision_activities(pair, result))
        batch.writes.extend(merge_writes(pair, result, row.fields.get("odata_etag")))
        kept = kept_differences(result)
        if kept:
            batch.report_kept(pair, kept)
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
        if not pair.first_merge_done:
            pair.first_merge_done, pair.first_merged_run = True, settings.run_id
        if not settings.dry_run:
            pair.guards = dict(result.guards)
        batch.pairs_to_save[person.record_id] = pair

    def _person_deleted(self, person: StagedRecord, pair: Pair | None, batch: PlanBatch) -> None:
        self.processed_persons.add(person.record_id)
        if pair is not None:
            row = self.lookups.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
            person_deleted(person, pair, row, self.settings, batch)

    def _dynamics_deleted(self, entity: Entity, record: StagedRecord, pair: Pair, batch: PlanBatch) -> None:
        person = self.lookups.staged_record(PERSONS_STREAM, pair.marketo_id)
        dynamics_deleted(entity, record, pair, person, self.settings, batch)
        self.processed_persons.add(pair.marketo_id)

    # -- Dynamics rows with no pair -------------------------------------------------------------
    def _unlinked_row(self, entity: Entity, record: StagedRecord, batch: PlanBatch) -> None:
        """A lead or contact with no pair: match it through its email's persons, or plan a person's create."""
        email = record.email_norm
        persons = self.lookups.staged_by_email(PERSONS_STREAM, email)
        if persons:
            with self.store.transaction() as connection:
                pairs = pairs_by_person(connection, (p.record_id for p in persons))
            for person in persons:
                if person.record_id not in self.processed_persons:
                    self._person(person, pairs.get(person.record_id), batch)
            return
        if email and email in self.created_for_email:
            return
        buried = self._buried("dynamics", entity, entity, record)
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
        self._person_for_row(entity, record, batch)

    def _person_for_row(self, entity: Entity, record: StagedRecord, batch: PlanBatch) -> None:
        """Plan a Marketo person's create for an unmatched lead or contact (or say why none)."""
        email = record.email_norm
        rows = [
            dynamics_row(e, r, None, self.settings.sync_filter_field)
            for e in CONTACTS_FIRST
            for r in self.lookups.staged_by_email(DYNAMICS_STREAM[e], email)
        ]
        reverse = match_dynamics_rows(rows or [dynamics_row(entity, record, None, self.settings.sync_filter_field)], [])
        decision = decide_create_in_marketo(reverse, self.settings.policy)
        chosen = reverse.row
        if not decision.create or chosen is None:
            if reverse.outcome == "ambiguous":
                activity = Activity(
                    "ambiguous_match",
                    None,
                    entity,
                    record.record_id,
                    "to_marketo",
                    rule=reverse.reason,
                    details={"candidates": list(reverse.candidates)},
                )
            else:
                activity = Activity("skipped", None, entity, record.record_id, "to_marketo", rule=decision.reason)
            batch.activities.append(activity)
            return
        if email:
            self.created_for_email.add(email)
        source = (
            record
            if chosen.id == record.record_id
            else self.lookups.staged_record(DYNAMICS_STREAM[chosen.entity], chosen.id)
        )
        fields = source.fields if source is not None else record.fields
        batch.writes.append(
            person_create(chosen.entity, chosen.id, fields, self.settings, self.options[chosen.entity], decision.reason)
        )


def merge_run_number(store: Store) -> int:
    """How many merge runs the store has seen (the ping-pong guard's clock)."""
    with store.transaction() as connection:
        return store_merge_run_number(connection)
