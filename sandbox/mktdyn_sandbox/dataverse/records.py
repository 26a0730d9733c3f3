"""Writes to lead and contact rows: create, update, upsert, delete, QualifyLead, UI edits.

One place applies the write semantics (validation, server defaults, the computed ``fullname``, version
and ``modifiedon`` bumps, the written-record counters), so the single-row routes, the bulk actions,
``$batch`` and the admin "UI edit" cannot drift apart. Counters are held back while an atomic group
(a changeset, a bulk action) is open and only counted when it commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mktdyn_sandbox.clock import SandboxClock, iso_z
from mktdyn_sandbox.dataverse import errors
from mktdyn_sandbox.dataverse.metadata import DEFAULT_OWNER_ID, ENTITIES, Entity
from mktdyn_sandbox.dataverse.store import Store, StoredRow
from mktdyn_sandbox.dataverse.validation import LOOKUP_TARGET, WriteTarget, validate
from mktdyn_sandbox.stats import Stats

_pending_counts: ContextVar[list[str] | None] = ContextVar("dataverse_pending_counts", default=None)
#: Lead columns QualifyLead copies onto the contact it creates.
QUALIFY_COPY = (
    "firstname",
    "lastname",
    "emailaddress1",
    "jobtitle",
    "telephone1",
    "mobilephone",
    "websiteurl",
    "address1_line1",
    "address1_city",
    "address1_stateorprovince",
    "address1_postalcode",
    "address1_country",
    "leadsourcecode",
    "donotbulkemail",
    "new_synctomkto",
)


@dataclass(frozen=True)
class WriteResult:
    """A written row and whether the write created it."""

    row: StoredRow
    created: bool


def full_name(data: dict[str, Any]) -> str | None:
    """``fullname`` as Dataverse computes it with the default "First Last" format."""
    parts = [str(data[key]).strip() for key in ("firstname", "lastname") if data.get(key)]
    return " ".join(part for part in parts if part) or None


def etag_matches(header: str, version: int) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` value names this version (``*`` matches any row)."""
    for candidate in header.split(","):
        value = candidate.strip()
        if value == "*":
            return True
        value = value.removeprefix("W/").strip('"')
        if value == str(version):
            return True
    return False


class RecordService:
    """The write side of the Web API over the store."""

    def __init__(self, store: Store, clock: SandboxClock, stats: Stats) -> None:
        self.store = store
        self.clock = clock
        self.stats = stats

    def now(self) -> str:
        """The sandbox time as Dataverse stores it (UTC, second precision)."""
        return iso_z(self.clock.now())

    # -- counters held back inside atomic groups ------------------------------------------------------------
    def _count(self, what: str) -> None:
        pending = _pending_counts.get()
        if pending is None:
            self.stats.count_written(what)
        else:
            pending.append(what)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Writes in the block commit together (or roll back together), counted only on commit."""
        outer = _pending_counts.get()
        pending: list[str] = []
        token = _pending_counts.set(pending)
        try:
            with self.store.atomic():
                yield
        finally:
            _pending_counts.reset(token)
        if outer is not None:
            outer.extend(pending)
        else:
            for what in pending:
                self.stats.count_written(what)

    # -- helpers --------------------------------------------------------------------------------------------
    def exists(self, entity: str, record_id: str) -> bool:
        """Whether a lookup target exists; tables the sandbox does not hold (accounts, users) always do."""
        return entity not in ENTITIES or self.store.get(entity, record_id) is not None

    def require(self, entity: Entity, record_id: str) -> StoredRow:
        """The row, or the documented 404."""
        row = self.store.get(entity.logical_name, record_id)
        if row is None:
            raise errors.not_found(entity.logical_name, record_id)
        return row

    # -- writes ---------------------------------------------------------------------------------------------
    def create(
        self, entity: Entity, payload: Any, record_id: str | None = None, key_values: dict[str, Any] | None = None
    ) -> StoredRow:
        """Create a row: server defaults, then the payload (which wins over alternate-key URL values)."""
        provisional = (record_id or str(uuid.uuid4())).lower()
        if key_values and isinstance(payload, dict):
            payload = {**key_values, **payload}
        changes = validate(WriteTarget(entity, "create", provisional), payload, self.exists)
        body_id = changes.pop(entity.primary_id, None)
        new_id = str(body_id or provisional).lower()
        if self.store.get(entity.logical_name, new_id) is not None:
            raise errors.already_exists()
        data: dict[str, Any] = {}
        for attribute in entity.attributes:
            if attribute.attribute_type == "Boolean":
                data[attribute.logical_name] = bool(attribute.default)
        state = entity.by_name["statecode"].options[0]
        data.update(statecode=state.value, statuscode=state.default_status, _ownerid_value=DEFAULT_OWNER_ID)
        data[f"_ownerid_value{LOOKUP_TARGET}"] = "systemuser"
        data.update(changes)
        data["fullname"] = full_name(data)
        row = self.store.insert(entity.logical_name, new_id, data, self.now())
        self._count("created")
        return row

    def update(self, entity: Entity, row: StoredRow, payload: Any) -> StoredRow:
        """Apply a payload to an existing row (every update bumps the version, as in Dataverse)."""
        changes = validate(WriteTarget(entity, "update", row.id, row.data), payload, self.exists)
        data = {**row.data, **changes}
        data["fullname"] = full_name(data)
        updated = self.store.replace(entity.logical_name, row, data, self.now())
        self._count("updated")
        return updated

    def upsert(
        self,
        entity: Entity,
        row: StoredRow | None,
        payload: Any,
        record_id: str | None,
        key_values: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Update the row when there is one, else create it (with the URL's id or key values)."""
        if row is not None:
            body = (
                {k: v for k, v in payload.items() if k not in (key_values or {})}
                if isinstance(payload, dict)
                else payload
            )
            return WriteResult(self.update(entity, row, body), created=False)
        return WriteResult(self.create(entity, payload, record_id, key_values), created=True)

    def delete(self, entity: Entity, record_id: str) -> None:
        """Delete a row (recorded for change tracking)."""
        if not self.store.delete(entity.logical_name, record_id, self.now()):
            raise errors.not_found(entity.logical_name, record_id)
        self._count("deleted")

    def touch(self, entity: Entity, record_id: str) -> StoredRow | None:
        """Bump a row's version as a concurrent editor would (the injected 412 makes it real)."""
        row = self.store.get(entity.logical_name, record_id)
        if row is None:
            return None
        return self.store.replace(entity.logical_name, row, dict(row.data), self.now())

    def qualify_lead(self, lead_id: str, body: Any) -> list[dict[str, Any]]:
        """``QualifyLead``: close the lead as qualified and create the contact it becomes.

        Accounts and opportunities are not simulated, so asking for them is refused rather than faked.
        """
        lead_entity, contact_entity = ENTITIES["lead"], ENTITIES["contact"]
        if not isinstance(body, dict):
            raise errors.bad_request(errors.INVALID_ARGUMENT, "QualifyLead needs a JSON object body.")
        for unsupported in ("CreateAccount", "CreateOpportunity"):
            if body.get(unsupported):
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    f"{unsupported}=true is not supported by the "
                    "mktdyn sandbox (it holds no accounts or opportunities).",
                )
        status = body.get("Status", 3)
        with self.atomic():
            lead = self.require(lead_entity, lead_id)
            if lead.data.get("statecode", 0) != 0:
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    "The lead is closed. You cannot convert or qualify a lead that is already closed.",
                )
            created: list[dict[str, Any]] = []
            if body.get("CreateContact"):
                values = {key: lead.data.get(key) for key in QUALIFY_COPY if lead.data.get(key) is not None}
                values["originatingleadid@odata.bind"] = f"/leads({lead.id})"
                contact = self.create(contact_entity, values)
                created.append({"@odata.type": "#Microsoft.Dynamics.CRM.contact", "contactid": contact.id})
            self.update(lead_entity, lead, {"statecode": 1, "statuscode": status})
        return created
