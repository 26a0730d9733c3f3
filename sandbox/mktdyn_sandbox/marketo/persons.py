"""Person writes with Marketo's semantics: Sync Leads outcomes, deletes, UI edits, and their activities.

One place decides what a write changes, which clock it moves and which activities it leaves, so the
API (``leads.json``) and the admin UI-edit hook cannot drift apart. Company fields are accepted when a
person is created (Marketo creates the company with the person) and silently ignored on updates, since
Sync Leads cannot update them (that is Sync Companies' job); read-only fields are ignored everywhere. The
``ignored_on_write`` admin setting names more fields ``leads.json`` silently ignores while answering "updated"
or "created", so tests can prove a client notices a write that did not land even when describe calls the
field writable (as a real instance does with fields locked by a CRM sync or a field-level permission).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator
from typing import Any

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.activities import ActivityLog
from mktdyn_sandbox.marketo.envelope import skipped
from mktdyn_sandbox.marketo.fields import FIELDS, FieldValueError, coerce
from mktdyn_sandbox.marketo.store import PersonStore, to_ts
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.stats import Stats
from mktdyn_sandbox.web import iter_chunks

ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")
API_SOURCE = "Web service API"
SEED_CHUNK = 10_000


class RecordSkippedError(Exception):
    """One input record that cannot be written; carries its record-level code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EditError(ValueError):
    """A UI edit naming an unknown or read-only field, or a value the field cannot hold."""


class PersonService:
    """Writes persons through the store and records what changed in the activity log."""

    def __init__(
        self,
        db: Database,
        store: PersonStore,
        log: ActivityLog,
        stats: Stats,
        clock: SandboxClock,
        ignored_on_write: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.db = db
        self.store = store
        self.log = log
        self.stats = stats
        self.clock = clock
        self.ignored_on_write = ignored_on_write

    # -- seed -------------------------------------------------------------------------------------
    def seed(self, plan: SeedPlan) -> None:
        """Load the plan's persons (ids 1..N) and their New Lead activities in bounded chunks."""
        numbered: Iterator[tuple[int, dict[str, Any]]] = enumerate(plan.marketo_persons(), start=1)
        for chunk in iter_chunks(numbered, SEED_CHUNK):
            with self.db.transaction() as conn:
                self.store.seed_rows(conn, chunk)
                self.log.seed_new_leads(conn, [(pid, person, to_ts(person["createdAt"])) for pid, person in chunk])
        self.store.seed_lists(plan.persons, self.clock.time())
        self.store.build_indexes()
        self.log.build_indexes()

    # -- Sync Leads ---------------------------------------------------------------------------------
    def sync(self, action: str, lookup_field: str, records: list[Any]) -> list[dict[str, Any]]:
        """Apply one ``leads.json`` write; one result per input record, in input order."""
        results: list[dict[str, Any]] = []
        with self.db.transaction() as conn:
            for record in records:
                try:
                    results.append(self._sync_one(conn, action, lookup_field, record))
                except RecordSkippedError as skip:
                    results.append(skipped(skip.code, skip.message))
        return results

    def _values(self, record: dict[str, Any], lookup_field: str) -> dict[str, Any]:
        unknown = [name for name in record if name not in FIELDS]
        if unknown:
            raise RecordSkippedError("1006", f"Field '{unknown[0]}' not found")
        values: dict[str, Any] = {}
        ignored = self.ignored_on_write()
        for name, raw in record.items():
            spec = FIELDS[name]
            if spec.read_only or name == "id" or name in ignored:
                continue  # read-only fields (and the id, unless it is the lookup) are ignored
            try:
                values[name] = coerce(spec, raw)
            except FieldValueError as exc:
                raise RecordSkippedError(exc.code, str(exc)) from exc
        return values

    def _sync_one(self, conn: sqlite3.Connection, action: str, lookup_field: str, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise RecordSkippedError("1003", "Invalid input record")
        values = self._values(record, lookup_field)
        lookup_value = record.get(lookup_field)
        if action == "createDuplicate":
            return self._create(conn, values)
        if lookup_value in (None, ""):
            if action == "createOnly":
                return self._create(conn, values)
            raise RecordSkippedError("1003", f"Value for lookup field '{lookup_field}' not specified")
        try:
            matches = self.store.find_by(lookup_field, lookup_value)
        except ValueError as exc:
            raise RecordSkippedError("1003", f"Invalid value for lookup field '{lookup_field}'") from exc
        if len(matches) > 1 and action != "createOnly":
            raise RecordSkippedError("1007", "Multiple leads match the lookup criteria")
        if action == "createOnly":
            if matches:
                raise RecordSkippedError("1005", "Lead already exists")
            return self._create(conn, values)
        if not matches:
            if action == "updateOnly":
                raise RecordSkippedError("1004", "Lead not found")
            return self._create(conn, values)
        updates = {name: value for name, value in values.items() if not FIELDS[name].company}
        self._update(conn, matches[0], updates, "Web service API", API_SOURCE)
        self.stats.count_written("updated")
        return {"id": matches[0]["id"], "status": "updated"}

    def _create(self, conn: sqlite3.Connection, values: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.time()
        fields = {spec.name: False for spec in FIELDS.values() if spec.data_type == "boolean" and not spec.read_only}
        fields.update(values)
        person_id = self.store.insert(conn, fields, now)
        self.log.new_lead(conn, {**fields, "id": person_id}, now, API_SOURCE)
        self.stats.count_written("created")
        return {"id": person_id, "status": "created"}

    def _update(
        self, conn: sqlite3.Connection, person: dict[str, Any], values: dict[str, Any], reason: str, source: str
    ) -> list[str]:
        """Store the changed values; ``updatedAt`` moves only if a standard field changed."""
        now = self.clock.time()
        changed = [name for name, value in values.items() if person.get(name) != value]
        if not changed:
            return []
        for name in changed:
            self.log.change(conn, person["id"], FIELDS[name], person.get(name), values[name], now, reason, source)
        merged = {**person, **{name: values[name] for name in changed}}
        visible = any(not FIELDS[name].custom for name in changed)
        self.store.update(conn, merged, visible=visible, now=now)
        return changed

    # -- deletes ------------------------------------------------------------------------------------
    def delete(self, records: list[Any]) -> list[dict[str, Any]]:
        """Delete by ``{"id": ...}`` items; ``deleted`` or ``skipped`` (1004) per record, in order."""
        results: list[dict[str, Any]] = []
        with self.db.transaction() as conn:
            for record in records:
                raw = record.get("id") if isinstance(record, dict) else None
                if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
                    results.append(skipped("1003", "Value for field 'id' not specified or invalid"))
                    continue
                if self._delete(conn, int(raw), through_api=True) is None:
                    results.append({"id": int(raw), **skipped("1004", "Lead not found")})
                    continue
                results.append({"id": int(raw), "status": "deleted"})
        return results

    def _delete(self, conn: sqlite3.Connection, person_id: int, *, through_api: bool) -> dict[str, Any] | None:
        person = self.store.get(person_id)
        if person is None:
            return None
        self.store.delete(conn, person_id)
        self.log.deleted(conn, person, self.clock.time())
        if through_api:
            self.stats.count_written("deleted")
        return person

    # -- UI (admin) ---------------------------------------------------------------------------------
    def ui_edit(self, person_id: int, fields: dict[str, Any]) -> list[str] | None:
        """An edit made in Marketo's UI; None when the person does not exist."""
        return self.flow_edit(person_id, fields, "Changed by user", "Web client")

    def flow_edit(
        self,
        person_id: int,
        fields: dict[str, Any],
        reason: str,
        source: str,
        before_change: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[str] | None:
        """An edit by a user or a flow step (a webhook's response mappings), with its activity reason/source.

        ``before_change`` runs first in the same transaction (a Call Webhook activity logged ahead of
        the Change Data Value activities it caused, even when nothing changes).
        """
        values: dict[str, Any] = {}
        for name, raw in fields.items():
            spec = FIELDS.get(name)
            if spec is None or spec.read_only or name == "id":
                raise EditError(f"field {name!r} is unknown or read-only in Marketo")
            try:
                values[name] = coerce(spec, raw)
            except FieldValueError as exc:
                raise EditError(str(exc)) from exc
        with self.db.transaction() as conn:
            person = self.store.get(person_id)
            if person is None:
                return None
            if before_change is not None:
                before_change(conn)
            return self._update(conn, person, values, reason, source)

    def ui_delete(self, person_id: int) -> dict[str, Any] | None:
        """A delete made in Marketo's UI."""
        with self.db.transaction() as conn:
            return self._delete(conn, person_id, through_api=False)
