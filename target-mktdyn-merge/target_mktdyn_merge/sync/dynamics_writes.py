"""Writes to Dynamics: `$batch` requests without changesets, `continue-on-error`, `If-Match` ETags.

Each update carries the ETag staged at extraction; a 412 means the row moved since, so the row is re-read,
the pair re-merged once with the fresh values, and the write sent again with the new ETag, or deferred to the
next run if it loses again (docs/architecture.md §4). Creates ask for the stored row back (``return=representation``),
which becomes the baseline; a create whose answer was lost is resolved by looking the email up, never re-sent blind, and
a create whose email a lead or contact already has (one the store has not seen yet) is not sent at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from mktdyn_common.errors import TransientError
from tap_dynamics_leads.batch import BatchOperation, BatchResult
from tap_dynamics_leads.client import DataverseClient

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.normalize import normalize_email
from target_mktdyn_merge.core.validation import Operation
from target_mktdyn_merge.core.values import utc_text
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, ENTITY_SET, PERSONS_STREAM
from target_mktdyn_merge.core.writes import OutboxEntry
from target_mktdyn_merge.store.outbox import mark
from target_mktdyn_merge.sync.write_context import WriteContext, entity_of

logger = logging.getLogger(__name__)

KEY = {"lead": "leadid", "contact": "contactid"}
#: Part statuses that mean "not now" (service protection, a busy server), never a record failure.
THROTTLED = (429, 503)
#: Waits before re-sending throttled parts within one run; what is still throttled then waits for the next run.
THROTTLE_WAITS = (2.0, 5.0, 10.0, 20.0, 30.0)


class DynamicsWriter:
    """Sends owed Dynamics writes and records their outcomes."""

    def __init__(
        self,
        client: DataverseClient,
        context: WriteContext,
        batch_size: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.context = context
        self.batch_size = max(1, min(1000, batch_size))
        self.sleep = sleep

    def _select(self, entity: str) -> list[str]:
        """Columns to read back: the key, modifiedon, and every mapped column."""
        columns = {KEY[entity], "modifiedon"}
        columns.update(rule.dynamics for rule in self.context.merge_context.field_map.rules(entity))
        readable = self.context.merge_context.metadata.dynamics_attributes[entity]
        return sorted(c for c in columns if c in readable)

    def write(self, entries: Sequence[OutboxEntry]) -> None:
        """Validate, send and record a page of Dynamics writes."""
        ready = [e for e in self._skip_existing(self._resolve_in_doubt(entries)) if self._valid(e)]
        conflicts = self._send(ready, allow_remerge=True)
        self._retry_conflicts(conflicts)

    # -- before sending -------------------------------------------------------------------------
    def _resolve_in_doubt(self, entries: Sequence[OutboxEntry]) -> list[OutboxEntry]:
        """Entries sent by a run that never saw the answer: a create is looked up before it is sent again."""
        ready = []
        for entry in entries:
            if entry.status == "sent" and entry.action == "create":
                entity = entity_of(entry)
                email = entry.payload.get("emailaddress1")
                found = self.client.find_by_email(ENTITY_SET[entity], str(email), self._select(entity)) if email else []
                if len(found) == 1:
                    row = found[0]
                    self.context.outcomes.confirmed(entry, row, created_id=str(row[KEY[entity]]))
                    continue
                if len(found) > 1:
                    self.context.outcomes.failed(
                        entry,
                        "ambiguous",
                        f"{len(found)} {entity}s have {email!r}; the create in doubt cannot be resolved",
                        final=True,
                    )
                    continue
            ready.append(entry)
        return ready

    def _skip_existing(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Creates whose email a lead or contact already has in Dynamics are not sent.

        (Except for emails this run has just read from Dataverse itself, under the lock: the real-time path.)
        The planner creates a lead only when no staged row has the person's email, but the store may not have
        seen that row yet: an extraction cut short (Meltano still ends the merging leg's input and the merge
        runs on what was staged), or a row created since. Dataverse does not refuse a duplicate email as
        Marketo does (1005), so the create path asks first (docs/architecture.md §4: an existing lead or contact is
        linked, never duplicated). The create is superseded; the next extraction stages the row and the planner links
        it by its usual rules (a contact before a lead; no guess among several).

        Which first merge that link gets depends on when Dataverse created the row. One created at or after this
        run's extraction started appeared since (a race with a user): the person asked for a lead and one is
        there, so the first merge is the create path's, which overwrites nothing. One created before was only
        not extracted yet (a cut-short extraction): an undisturbed run would have matched it, so its first merge
        is the usual first link's, with the entity's authority, and an interrupted run ends where an undisturbed
        one does. The activity's ``appeared_since_extraction`` records which (``creates_found_existing``).
        """
        just_read = self.context.emails_just_read
        creates = [
            e
            for e in entries
            if e.action == "create"
            and e.status != "sent"
            and e.payload.get("emailaddress1")
            and normalize_email(e.payload.get("emailaddress1")) not in just_read
        ]
        if not creates:
            return entries
        emails = sorted({str(e.payload["emailaddress1"]).strip() for e in creates})
        existing: dict[str, list[tuple[str, str]]] = {}
        started = self.context.store.run_read_from(self.context.run_id)
        appeared: dict[str, bool] = {}
        for entity in ("contact", "lead"):
            columns = [KEY[entity], "emailaddress1", "createdon"]
            for row in self.client.find_by_emails(ENTITY_SET[entity], emails, columns):
                email = normalize_email(row.get("emailaddress1"))
                if email is not None:
                    existing.setdefault(email, []).append((entity, str(row[KEY[entity]])))
                    # A row whose creation time is unknown counts as new: the create path overwrites nothing.
                    created = utc_text(row.get("createdon"))
                    appeared[email] = appeared.get(email, True) and (not created or not started or created >= started)
        checked = {e.op_id for e in creates}
        ready = []
        for entry in entries:
            email = normalize_email(entry.payload.get("emailaddress1")) if entry.op_id in checked else None
            found = existing.get(email) if email is not None else None
            if not found:
                ready.append(entry)
                continue
            entity, row_id = found[0]
            rows = ", ".join(f"{e} {i}" for e, i in found)
            since = appeared[email] if email is not None else True
            when = "created since this run's extraction started" if since else "not extracted yet"
            then = "linked on the create path (nothing overwritten)" if since else "matched with it by the usual rules"
            self.context.outcomes.superseded(
                entry,
                [
                    Activity(
                        "skipped",
                        entry.context.person_id,
                        entity,
                        row_id if len(found) == 1 else None,
                        "to_dynamics",
                        rule=f"Dynamics already has {rows} with this email, {when}: no lead is created; "
                        f"the next extraction brings it and the person is {then}",
                        details={
                            "op_id": entry.op_id,
                            "planned": entry.action,
                            "candidates": [i for _, i in found],
                            "appeared_since_extraction": since,
                        },
                    )
                ],
            )
        return ready

    def _valid(self, entry: OutboxEntry) -> bool:
        if entry.action == "delete":
            return True
        entity = entity_of(entry)
        current = None
        if entry.target_id:
            staged = self.context.store.staged_record(DYNAMICS_STREAM[entity], entry.target_id)
            current = staged.fields if staged is not None else None
        operation: Operation = "create" if entry.action == "create" else "update"
        found = self.context.dynamics_validator.validate(entity, operation, entry.payload, current)
        if not found:
            return True
        self.context.outcomes.invalid(entry, self.context.violations(entry, found), "dynamics")
        return False

    def _operation(self, entry: OutboxEntry, etag: str | None = None) -> BatchOperation:
        entity = entity_of(entry)
        entity_set = ENTITY_SET[entity]
        if entry.action == "create":
            return BatchOperation.create(entity_set, entry.payload, self._select(entity))
        if entry.action == "delete":
            return BatchOperation.delete(entity_set, str(entry.target_id))
        if entry.action == "update":
            etag = etag or entry.context.etag
        return BatchOperation.update(entity_set, str(entry.target_id), entry.payload, etag, self._select(entity))

    # -- sending --------------------------------------------------------------------------------
    def _send(
        self, entries: Sequence[OutboxEntry], allow_remerge: bool, etags: dict[int, str] | None = None
    ) -> list[OutboxEntry]:
        """Send in `$batch` requests; re-send throttled parts after a wait; return the updates that met a 412."""
        conflicts: list[OutboxEntry] = []
        pending = list(entries)
        for wait in (0.0, *THROTTLE_WAITS):
            if not pending:
                return conflicts
            if wait:
                logger.warning(
                    "Dataverse throttled %d write(s) (service protection); re-sending in %g s", len(pending), wait
                )
                self.sleep(wait)
            pending = self._send_once(pending, allow_remerge, etags, conflicts)
        if pending:
            logger.warning("%d Dataverse write(s) still throttled; they stay owed and go next run", len(pending))
            with self.context.store.transaction() as connection:
                mark(
                    connection,
                    [e.op_id for e in pending],
                    "planned",
                    error_code="429",
                    error_message="throttled by Dataverse service protection; sent next run",
                )
        return conflicts

    def _send_once(
        self,
        entries: Sequence[OutboxEntry],
        allow_remerge: bool,
        etags: dict[int, str] | None,
        conflicts: list[OutboxEntry],
    ) -> list[OutboxEntry]:
        """One pass of `$batch` requests; return the entries Dataverse throttled (never record failures)."""
        throttled: list[OutboxEntry] = []
        for start in range(0, len(entries), self.batch_size):
            chunk = list(entries[start : start + self.batch_size])
            with self.context.store.transaction() as connection:
                mark(connection, [e.op_id for e in chunk], "sent")  # from here on, a crash leaves them in doubt
            operations = [self._operation(e, (etags or {}).get(e.op_id)) for e in chunk]
            crash_point("dynamics-before-send")
            try:
                results = self.client.batch(operations, continue_on_error=True)
                crash_point("dynamics-after-send")
            except TransientError as exc:
                logger.warning(
                    "Dynamics $batch of %d write(s) did not complete (%s); they are resolved next run", len(chunk), exc
                )
                return []
            with self.context.outcomes.batch(chunk):
                for entry, result in zip(chunk, results, strict=True):
                    if result.status in THROTTLED:
                        throttled.append(entry)
                    elif result.status == 412 and entry.action == "update" and allow_remerge:
                        conflicts.append(entry)
                    else:
                        self._record(entry, result)
        return throttled

    def _record(self, entry: OutboxEntry, result: BatchResult) -> None:
        outcomes = self.context.outcomes
        entity = entity_of(entry)
        if result.ok:
            body: dict[str, Any] = dict(result.body or {})
            if entry.action == "create":
                created = body.get(KEY[entity]) or result.entity_id
                outcomes.confirmed(entry, body, created_id=str(created) if created else None)
            else:
                outcomes.confirmed(entry, body)
        elif result.status == 404 and entry.action == "delete":
            outcomes.confirmed(entry, {})  # already gone: what the delete wanted
        elif result.status == 404:
            outcomes.failed(
                entry,
                result.error_code or "404",
                f"{entity} {entry.target_id} no longer exists in Dynamics; its delete arrives with the next extraction",
                final=True,
            )
        elif result.status == 412:
            outcomes.deferred(entry, "the row changed again while being written; retried next run")
        else:
            outcomes.failed(
                entry, result.error_code or str(result.status), result.error_message or f"HTTP {result.status}"
            )

    # -- 412: re-read, re-merge once, write or defer ----------------------------------------------
    def _retry_conflicts(self, conflicts: Sequence[OutboxEntry]) -> None:
        retry: list[OutboxEntry] = []
        etags: dict[int, str] = {}
        for entry in conflicts:
            entity = entity_of(entry)
            row = self.client.get(ENTITY_SET[entity], str(entry.target_id), self._select(entity))
            person_id = str(entry.context.person_id)
            person = self.context.store.staged_record(PERSONS_STREAM, person_id)
            pair = self.context.pair_of(person_id)
            if row is None or person is None or pair is None or pair.dynamics_id != entry.target_id:
                self.context.outcomes.failed(entry, "412", "the row changed and can no longer be merged", final=True)
                continue
            etag = str(row.get("@odata.etag") or "")
            fresh = {**row, "odata_etag": etag}
            writes, activities = self.context.remerge(pair, person.fields, fresh, etag)
            mine = [w for w in writes if w.system == "dynamics"]
            self.context.follow_up(w for w in writes if w.system == "marketo")
            if not mine or entry.context.follow_up:
                if mine:
                    self.context.outcomes.deferred(entry, "the row moved again; re-merged next run")
                else:
                    self.context.outcomes.superseded(entry, activities)
                continue
            self.context.replace(entry, mine[0])
            etags[entry.op_id] = etag
            retry.append(entry)
            self.context.outcomes.noted(activities)
        ready = [e for e in retry if self._valid(e)]
        self._send(ready, allow_remerge=False, etags=etags)
