"""What one planning batch reads from the store, fetched up front in a few set-based queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from target_mktdyn_merge.core.matching import DynamicsRow
from target_mktdyn_merge.core.records import StagedRecord
from target_mktdyn_merge.core.vocabulary import (
    CONTACTS_FIRST,
    DYNAMICS_STREAM,
    ORIGINATING_LEAD,
    PERSONS_STREAM,
    Entity,
)
from target_mktdyn_merge.store.activity_log import creates_found_existing
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.pairs import persons_linked_to
from target_mktdyn_merge.store.tombstones import buried_among


class BatchLookups:
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
        #: The person each lead or contact read by email is linked to (None: not linked).
        self.dynamics_links: dict[tuple[str, str], str | None] = {}
        self.tombstone_ids: set[str] = set()
        self.tombstones: set[tuple[str, str, str]] = set()
        #: The batch's persons, and (once asked) which of them a real run found an existing lead for.
        self.batch_persons: set[str] = set()
        self.found_existing: set[str] | None = None
        #: Every record decoded for this batch, by stream and id (reused when read again at the same version).
        self.pool: dict[str, dict[str, StagedRecord]] = {}

    def clear(self) -> None:
        """Forget everything (a batch committed; memory stays bounded by the batch size)."""
        self.staged.clear()
        self.by_email.clear()
        self.dynamics_links.clear()
        self.tombstone_ids.clear()
        self.tombstones.clear()
        self.batch_persons.clear()
        self.found_existing = None
        self.pool.clear()

    def decoded(self, records: Iterable[StagedRecord]) -> None:
        """Records the batch already holds (its own): reused, not decoded again, when the store reads them."""
        for record in records:
            self.pool.setdefault(record.source, {})[record.record_id] = record

    def prefetch_records(self, stream: str, record_ids: Iterable[str]) -> None:
        """Staged records of ``stream`` by id."""
        wanted = {i for i in record_ids if (stream, i) not in self.staged}
        found = self.store.staged_records(stream, wanted, self.pool.get(stream))
        self.decoded(found.values())
        for record_id in wanted:
            self.staged[(stream, record_id)] = found.get(record_id)

    def prefetch_emails(self, emails: Iterable[str | None]) -> None:
        """Live persons, contacts and leads with these emails, and whom those contacts and leads are linked to."""
        wanted = {e for e in emails if e}
        rows: list[tuple[str, str]] = []
        for entity, stream in (("person", PERSONS_STREAM), *((e, DYNAMICS_STREAM[e]) for e in CONTACTS_FIRST)):
            missing = [e for e in wanted if (stream, e) not in self.by_email]
            found = self.store.staged_by_email(stream, missing, self.pool.get(stream))
            for email in missing:
                self.by_email[(stream, email)] = found.get(email, [])
            for records in found.values():
                self.decoded(records)
                for record in records:
                    self.staged.setdefault((stream, record.record_id), record)
                    if entity != "person":
                        rows.append((entity, record.record_id))
        self._prefetch_links(rows)

    def prefetch_tombstones(self, record_ids: Iterable[str]) -> None:
        """Which of these records (of either system) have a tombstone."""
        wanted = sorted({str(i) for i in record_ids} - self.tombstone_ids)
        with self.store.transaction() as connection:
            self.tombstones.update(buried_among(connection, wanted))
        self.tombstone_ids.update(wanted)

    def create_found_existing(self, person_id: str) -> bool:
        """Whether a real run planned this person's lead and found one already there.

        Asked for the batch's persons together the first time (one query, not one per person).
        """
        if self.found_existing is None or person_id not in self.batch_persons:
            self.batch_persons.add(person_id)
            with self.store.transaction() as connection:
                self.found_existing = creates_found_existing(connection, self.batch_persons)
        return person_id in self.found_existing

    def staged_record(self, stream: str, record_id: str) -> StagedRecord | None:
        """A staged record by id (from the prefetch, else the store)."""
        key = (stream, str(record_id))
        if key not in self.staged:
            self.staged[key] = self.store.staged_record(stream, str(record_id))
        return self.staged[key]

    def staged_by_email(self, stream: str, email: str | None) -> list[StagedRecord]:
        """The live records of ``stream`` with this normalized email (from the prefetch, else the store)."""
        if not email:
            return []
        key = (stream, email)
        if key not in self.by_email:
            self.by_email[key] = self.store.staged_by_email(stream, [email]).get(email, [])
        return self.by_email[key]

    def linked_persons(self, entity: Entity, records: list[StagedRecord]) -> dict[tuple[str, str], str]:
        """The person each of these leads or contacts is linked to, by (entity, id) (unlinked ones absent)."""
        keys = [(entity, r.record_id) for r in records]
        self._prefetch_links(keys)
        return {key: person for key in keys if (person := self.dynamics_links[key]) is not None}

    def _prefetch_links(self, keys: Sequence[tuple[str, str]]) -> None:
        missing = [key for key in keys if key not in self.dynamics_links]
        if missing:
            with self.store.transaction() as connection:
                found = persons_linked_to(connection, missing)
            for key in missing:
                self.dynamics_links[key] = found.get(key)

    def may_be_buried(self, system: str, entity: str, record_id: str) -> bool:
        """False only when the prefetch saw that the record has no tombstone."""
        return record_id not in self.tombstone_ids or (system, entity, record_id) in self.tombstones


def dynamics_row(
    entity: Entity, record: StagedRecord, linked_person: str | None, filter_field: str | None
) -> DynamicsRow:
    """What matching needs of a staged lead or contact (``linked_person``: the person it is linked to)."""
    fields = record.fields
    statecode = fields.get("statecode")
    return DynamicsRow(
        entity=entity,
        id=record.record_id,
        email=fields.get("emailaddress1"),
        statecode=int(statecode) if isinstance(statecode, int | float) else None,
        originating_lead_id=fields.get(ORIGINATING_LEAD),
        linked_person_id=linked_person,
        sync_filter=fields.get(filter_field) if filter_field else None,
    )
