"""Writes to Marketo: `updateOnly` by id and `createOnly` by email, 300 per call, with per-record outcomes.

Marketo has no conditional update, so the persons about to be updated are re-read (300 per call) right
before writing; a person that moved since extraction is re-merged with its fresh values first, so a Marketo
user's edit made between extraction and write-back is never overwritten (docs/architecture.md §4). A create whose answer
was lost, or that Marketo refuses because the email exists (1005), is resolved by looking the email up.

Marketo acknowledges a write it partly ignored ("updated" for a person whose company field or locked field
kept its value), so an acknowledgment proves nothing about what is stored: after each ``leads.json`` update or
create call the written persons are read back (``leads.json`` by id, only the written fields, one read call
per 300 writes) and the baselines move to what was read (:meth:`Outcomes.confirmed`), a value that did not
land being reported as ``write_ignored``. These read-backs are reads (``calls['read']``), not writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mktdyn_common.errors import TransientError
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.outcomes import RecordOutcome

from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.normalize import canonical
from target_mktdyn_merge.core.validation import Operation
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, PERSONS_STREAM
from target_mktdyn_merge.core.writes import OutboxEntry
from target_mktdyn_merge.store.outbox import mark
from target_mktdyn_merge.sync.write_context import WriteContext, entity_of

logger = logging.getLogger(__name__)

BATCH = 300


class MarketoWriter:
    """Sends owed Marketo writes and records their outcomes."""

    def __init__(self, client: MarketoClient, context: WriteContext) -> None:
        self.client = client
        self.context = context

    def _fields(self) -> list[str]:
        rules = self.context.merge_context.field_map
        names = {"id", "email", "updatedAt"} | {r.marketo for e in ("lead", "contact") for r in rules.rules(e)}
        known = self.context.merge_context.metadata.marketo_fields
        return sorted(n for n in names if n in known)

    def write(self, entries: Sequence[OutboxEntry]) -> None:
        """Re-read, re-merge, validate, send and record a page of Marketo writes."""
        updates = [e for e in entries if e.action in ("update", "flag")]
        creates = [e for e in entries if e.action == "create"]
        deletes = [e for e in entries if e.action == "delete"]
        updates = self._reread(updates)
        self._send_updates([e for e in updates if self._valid(e, "update")])
        self._send_creates([e for e in self._resolve_creates_in_doubt(creates) if self._valid(e, "create")])
        self._send_deletes(deletes)

    def _valid(self, entry: OutboxEntry, operation: Operation) -> bool:
        found = self.context.marketo_validator.validate(operation, entry.payload)
        if not found:
            return True
        self.context.outcomes.invalid(entry, self.context.violations(entry, found), "marketo")
        return False

    # -- the re-read ----------------------------------------------------------------------------
    def _reread(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Re-merge persons that moved since extraction; drop writes to persons that are gone."""
        if not entries:
            return []
        ids = sorted({int(str(e.target_id)) for e in entries})
        fresh = {str(p["id"]): p for p in self.client.get_leads("id", ids, self._fields())}
        ready: list[OutboxEntry] = []
        for entry in entries:
            person_id = str(entry.target_id)
            current = fresh.get(person_id)
            if current is None:
                self.context.outcomes.failed(
                    entry,
                    "1004",
                    f"person {person_id} no longer exists in Marketo; its delete arrives with the next extraction",
                    final=True,
                )
                continue
            if entry.action == "flag" or not self._moved(entry, current):
                ready.append(entry)
                continue
            replacement = self._remerge(entry, current)
            if replacement is not None:
                ready.append(replacement)
        return ready

    def _moved(self, entry: OutboxEntry, current: dict[str, Any]) -> bool:
        staged = self.context.store.staged_record(PERSONS_STREAM, str(entry.target_id))
        if staged is None:
            return True
        pair = self.context.pair_of(str(entry.target_id))
        entity = pair.entity if pair else entity_of(entry)
        for rule in self.context.merge_context.field_map.rules(entity):
            if rule.marketo not in current:
                continue
            if canonical(rule.kind, current.get(rule.marketo)) != canonical(rule.kind, staged.fields.get(rule.marketo)):
                return True
        return False

    def _remerge(self, entry: OutboxEntry, current: dict[str, Any]) -> OutboxEntry | None:
        person_id = str(entry.target_id)
        pair = self.context.pair_of(person_id)
        staged = self.context.store.staged_record(PERSONS_STREAM, person_id)
        if pair is None or staged is None:
            self.context.outcomes.failed(entry, "unlinked", "the pair changed before the write", final=True)
            return None
        row = self.context.store.staged_record(DYNAMICS_STREAM[pair.entity], pair.dynamics_id)
        if row is None:
            self.context.outcomes.failed(entry, "unlinked", "the Dynamics row is gone", final=True)
            return None
        person = {**staged.fields, **current}
        writes, activities = self.context.remerge(pair, person, row.fields, row.fields.get("odata_etag"))
        self.context.follow_up(w for w in writes if w.system == "dynamics")
        mine = [w for w in writes if w.system == "marketo"]
        if not mine:
            self.context.outcomes.superseded(entry, activities)
            return None
        self.context.outcomes.noted(activities)
        self.context.replace(entry, mine[0])
        return entry

    # -- sending --------------------------------------------------------------------------------
    def _sent(self, entries: Sequence[OutboxEntry]) -> None:
        with self.context.store.transaction() as connection:
            mark(connection, [e.op_id for e in entries], "sent")  # from here on, a crash leaves them in doubt

    def _calls(
        self,
        entries: list[OutboxEntry],
        what: str,
        call: Callable[[list[OutboxEntry]], list[RecordOutcome]],
        crash_at: str | None = None,
        then: str = "resent",
    ) -> Iterator[tuple[list[OutboxEntry], list[RecordOutcome]]]:
        """Send ``entries`` 300 per call, each chunk marked sent first; yield each chunk with its outcomes.

        A call that did not complete leaves its chunk in doubt and stops the rest: the next run resolves them.
        """
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            self._sent(chunk)
            try:
                results = call(chunk)
                if crash_at is not None:
                    crash_point(crash_at)
            except TransientError as exc:
                logger.warning(
                    "Marketo %s of %d person(s) did not complete (%s); %s next run", what, len(chunk), exc, then
                )
                return
            yield chunk, results

    def _record_all(
        self, chunk: list[OutboxEntry], results: list[RecordOutcome], stored: dict[str, dict[str, Any]] | None = None
    ) -> None:
        with self.context.outcomes.batch(chunk):
            for entry, outcome in zip(chunk, results, strict=True):
                self._record(entry, outcome, stored=stored)

    def _read_back(self, written: list[tuple[OutboxEntry, str]]) -> dict[str, dict[str, Any]] | None:
        """The written fields of persons just written (person id → values), or None if the read failed.

        One ``leads.json`` read per 300 persons (a chunk is at most 300), asking only for the fields sent.
        """
        if not written:
            return {}
        fields = sorted({name for entry, _ in written for name in entry.payload if name != "id"})
        ids = sorted({int(person_id) for _, person_id in written})
        try:
            return {str(p["id"]): p for p in self.client.get_leads("id", ids, fields)}
        except TransientError as exc:
            logger.warning(
                "Marketo read-back of %d written person(s) failed (%s); the next extraction confirms them",
                len(ids),
                exc,
            )
            return None

    def _send_updates(self, entries: list[OutboxEntry]) -> None:
        def update(chunk: list[OutboxEntry]) -> list[RecordOutcome]:
            return self.client.sync_leads("updateOnly", [e.payload for e in chunk], "id")

        for chunk, results in self._calls(entries, "update", update, "marketo-after-update"):
            written = [(e, str(e.target_id)) for e, o in zip(chunk, results, strict=True) if o.status == "updated"]
            self._record_all(chunk, results, self._read_back(written))

    def _record(
        self,
        entry: OutboxEntry,
        outcome: RecordOutcome,
        created_id: str | None = None,
        stored: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Record one per-record outcome; ``stored`` is the read-back by person id (None: it failed)."""
        outcomes = self.context.outcomes
        if outcome.status == "deleted":
            outcomes.confirmed(entry, {})
            return
        if outcome.status in ("updated", "created"):
            person_id = created_id or str(entry.target_id)
            if stored is None:
                outcomes.confirmed(entry, None if outcome.status == "updated" else entry.payload, created_id=created_id)
            else:
                # A person gone between the write and the read-back has no read-back: the baseline falls back
                # to what was sent, and its delete arrives with the next extraction.
                outcomes.confirmed(entry, stored.get(person_id, {}), created_id=created_id)
            return
        code, message = outcome.reasons[0] if outcome.reasons else ("skipped", "Marketo skipped the record")
        if entry.action == "delete" and code == "1004":
            outcomes.confirmed(entry, {})  # already gone: what the delete wanted
        else:
            outcomes.failed(entry, code, message, final=code == "1004")

    def _resolve_creates_in_doubt(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        ready = []
        for entry in entries:
            if entry.status == "sent" and self._link_existing(entry):
                continue
            ready.append(entry)
        return ready

    def _link_existing(self, entry: OutboxEntry) -> bool:
        """A person with the create's email already exists (ours from a lost answer, or someone's): link it."""
        email = entry.payload.get("email")
        if not email:
            return False
        found = list(self.client.get_leads("email", [email], ["id", "email"]))
        if len(found) != 1:
            return False
        self.context.outcomes.confirmed(
            entry, entry.payload, created_id=str(found[0]["id"]), linked_existing=entry.status != "sent"
        )
        return True

    def _send_creates(self, entries: list[OutboxEntry]) -> None:
        def create(chunk: list[OutboxEntry]) -> list[RecordOutcome]:
            return self.client.sync_leads("createOnly", [e.payload for e in chunk], "email")

        for chunk, results in self._calls(entries, "create", create, "marketo-after-create", "resolved"):
            taken = []  # the email is someone's already: looked up (an API call) outside the transaction
            created = [
                (e, str(o.id))
                for e, o in zip(chunk, results, strict=True)
                if o.status == "created" and o.id is not None
            ]
            stored = self._read_back(created)
            with self.context.outcomes.batch(chunk):
                for entry, outcome in zip(chunk, results, strict=True):
                    if outcome.status == "created" and outcome.id is not None:
                        self._record(entry, outcome, created_id=str(outcome.id), stored=stored)
                    elif outcome.reasons and outcome.reasons[0][0] == "1005":
                        taken.append((entry, outcome))
                    else:
                        self._record(entry, outcome)
            for entry, outcome in taken:
                if not self._link_existing(entry):
                    self._record(entry, outcome)

    def _send_deletes(self, entries: list[OutboxEntry]) -> None:
        def delete(chunk: list[OutboxEntry]) -> list[RecordOutcome]:
            return self.client.delete_leads([int(str(e.target_id)) for e in chunk])

        for chunk, results in self._calls(entries, "delete", delete):
            self._record_all(chunk, results)
