"""The activity log: what every write leaves behind, and the paging-token feed that reads it.

Marketo's paging tokens are opaque base32 strings that decode to a date and a position
(``2008-11-06T00:00:00.000+0000,0``); the sandbox uses the same encoding with the position being the
last activity id returned, so a token is a high-water mark that survives restarts. Activities are
ordered by (activity time in milliseconds, id). Activity endpoints always return ``nextPageToken`` and
``moreResult``; ``result`` is left out when a page is empty, as Marketo does (clients guard for it).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.fields import FieldSpec
from mktdyn_sandbox.marketo.store import full_name, run_script

NEW_LEAD = 12
CHANGE_DATA_VALUE = 13
DELETE_LEAD = 37
#: Marketo's id of "Call Webhook" as lists of standard activity types give it; not confirmed by the
#: developer docs the sandbox follows (they show only a few types), so a client should look it up by name.
CALL_WEBHOOK = 110
VISIT_WEBPAGE = 1
FILL_OUT_FORM = 2

#: Built-in activity types (the ids confirmed by the docs).
BUILTIN_TYPES: tuple[dict[str, Any], ...] = (
    {
        "id": VISIT_WEBPAGE,
        "name": "Visit Webpage",
        "description": "User visits a web page",
        "primaryAttribute": {"name": "Webpage ID", "dataType": "integer"},
        "attributes": [
            {"name": "Client IP Address", "dataType": "string"},
            {"name": "Query Parameters", "dataType": "string"},
            {"name": "Referrer URL", "dataType": "string"},
            {"name": "Webpage URL", "dataType": "string"},
        ],
    },
    {
        "id": FILL_OUT_FORM,
        "name": "Fill Out Form",
        "description": "User fills out and submits form on web page",
        "primaryAttribute": {"name": "Webform ID", "dataType": "integer"},
        "attributes": [
            {"name": "Client IP Address", "dataType": "string"},
            {"name": "Form Fields", "dataType": "text"},
            {"name": "Webpage ID", "dataType": "integer"},
        ],
    },
    {
        "id": NEW_LEAD,
        "name": "New Lead",
        "description": "New person",
        "primaryAttribute": {"name": "Lead ID", "dataType": "integer"},
        "attributes": [{"name": "Created Date", "dataType": "date"}, {"name": "Source Type", "dataType": "string"}],
    },
    {
        "id": CHANGE_DATA_VALUE,
        "name": "Change Data Value",
        "description": "Changed attribute value for a person",
        "primaryAttribute": {"name": "Attribute Name", "dataType": "integer"},
        "attributes": [
            {"name": "New Value", "dataType": "string"},
            {"name": "Old Value", "dataType": "string"},
            {"name": "Reason", "dataType": "string"},
            {"name": "Source", "dataType": "string"},
        ],
    },
    {
        "id": DELETE_LEAD,
        "name": "Delete Lead",
        "description": "Delete a person",
        "primaryAttribute": {"name": "Lead ID", "dataType": "integer"},
        "attributes": [{"name": "Remove from CRM", "dataType": "boolean"}],
    },
    {
        "id": CALL_WEBHOOK,
        "name": "Call Webhook",
        "description": "Call a webhook from a trigger campaign's flow",
        "primaryAttribute": {"name": "Webhook ID", "dataType": "integer"},
        "attributes": [
            {"name": "Campaign Name", "dataType": "string"},
            {"name": "Response Code", "dataType": "integer"},
            {"name": "Error Type", "dataType": "string"},
        ],
    },
)
BUILTIN_TYPE_IDS = frozenset(t["id"] for t in BUILTIN_TYPES)

SCHEMA = """
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_ms INTEGER NOT NULL,
    type_id INTEGER NOT NULL,
    lead_id INTEGER NOT NULL,
    primary_id INTEGER,
    primary_value TEXT,
    field_name TEXT,
    payload TEXT NOT NULL
);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS activities_time ON activities (activity_ms, id);
CREATE INDEX IF NOT EXISTS activities_lead ON activities (lead_id, activity_ms, id);
"""

COLUMNS = "id, activity_ms, type_id, lead_id, primary_id, primary_value, field_name, payload"


class TokenError(ValueError):
    """A paging token that does not decode."""


@dataclass(frozen=True)
class PagingToken:
    """A position in the activity log: activities after (``ms``, ``last_id``) come next."""

    ms: int
    last_id: int

    def encode(self) -> str:
        """Base32 of ``<ISO with millis>+0000,<id>``, the shape of Marketo's tokens."""
        moment = datetime.fromtimestamp(self.ms / 1000, tz=UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.ms % 1000:03d}+0000,{self.last_id}"
        return base64.b32encode(text.encode("ascii")).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> PagingToken:
        """Parse a token (padding optional); TokenError when it is not one of ours."""
        try:
            raw = token.strip().upper()
            text = base64.b32decode(raw + "=" * (-len(raw) % 8)).decode("ascii")
            stamp, _, last_id = text.rpartition(",")
            moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")
            return cls(round(moment.timestamp() * 1000), int(last_id))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise TokenError(token) from exc


def _text(value: Any) -> str | None:
    """Change Data Value renders values as text, as the activity log shows them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iso_ms(ms: int) -> str:
    """Activity dates with a trailing ``Z`` (marketorestpython parses ``%Y-%m-%dT%H:%M:%SZ``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ActivityQuery:
    """Filters of one page request."""

    type_ids: Sequence[int]
    lead_ids: Sequence[int] = ()
    list_id: int | None = None
    change_fields: Sequence[str] | None = None


class ActivityLog:
    """Records activities and pages through them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        run_script(db, SCHEMA)

    def build_indexes(self) -> None:
        """Create the secondary indexes (after the bulk seed)."""
        run_script(self.db, INDEXES)

    # -- recording --------------------------------------------------------------------------------
    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        now: float,
        type_id: int,
        lead_id: int,
        primary_id: int | None,
        primary_value: str | None,
        payload: dict[str, Any],
        field_name: str | None = None,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO activities (activity_ms, type_id, lead_id, primary_id, primary_value, field_name, payload) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                int(now * 1000),
                type_id,
                lead_id,
                primary_id,
                primary_value,
                field_name,
                json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            ),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def seed_new_leads(conn: sqlite3.Connection, persons: Sequence[tuple[int, dict[str, Any], float]]) -> None:
        """New Lead activities of seeded persons, dated at their creation."""
        conn.executemany(
            "INSERT INTO activities (activity_ms, type_id, lead_id, primary_id, primary_value, payload) "
            "VALUES (?,?,?,?,?,?)",
            [
                (
                    int(created * 1000),
                    NEW_LEAD,
                    pid,
                    pid,
                    full_name(p),
                    '{"attributes":[{"name":"Created Date","value":"'
                    + p["createdAt"][:10]
                    + '"},{"name":"Source Type","value":"New lead"}]}',
                )
                for pid, p, created in persons
            ],
        )

    def new_lead(self, conn: sqlite3.Connection, person: dict[str, Any], now: float, source: str) -> int:
        """Type 12 on create."""
        created = datetime.fromtimestamp(now, tz=UTC).date().isoformat()
        payload = {"attributes": [{"name": "Created Date", "value": created}, {"name": "Source Type", "value": source}]}
        return self._insert(conn, now, NEW_LEAD, person["id"], person["id"], full_name(person), payload)

    def change(
        self,
        conn: sqlite3.Connection,
        lead_id: int,
        spec: FieldSpec,
        old: Any,
        new: Any,
        now: float,
        reason: str,
        source: str,
    ) -> int:
        """Type 13, one per changed field, with old and new values."""
        payload = {
            "fields": [{"id": spec.id, "name": spec.name, "newValue": _text(new), "oldValue": _text(old)}],
            "attributes": [{"name": "Reason", "value": reason}, {"name": "Source", "value": source}],
        }
        return self._insert(conn, now, CHANGE_DATA_VALUE, lead_id, spec.id, spec.display_name, payload, spec.name)

    def webhook_call(
        self,
        conn: sqlite3.Connection,
        lead_id: int,
        webhook_id: int,
        webhook_name: str,
        now: float,
        attributes: list[dict[str, Any]],
    ) -> int:
        """Type 110, one per call a Call Webhook flow step makes; the primary attribute is the webhook."""
        return self._insert(conn, now, CALL_WEBHOOK, lead_id, webhook_id, webhook_name, {"attributes": attributes})

    def deleted(self, conn: sqlite3.Connection, person: dict[str, Any], now: float) -> int:
        """Type 37 on delete; the primary attribute value is the person's name."""
        return self._insert(conn, now, DELETE_LEAD, person["id"], person["id"], full_name(person), {"attributes": []})

    def custom(
        self,
        conn: sqlite3.Connection,
        lead_id: int,
        when_ms: int,
        type_id: int,
        primary_value: str,
        attributes: list[dict[str, Any]],
    ) -> int:
        """A custom activity (write-once), dated as the client asked."""
        return self._insert(conn, when_ms / 1000, type_id, lead_id, None, primary_value, {"attributes": attributes})

    # -- reading ----------------------------------------------------------------------------------
    def page(self, token: PagingToken, query: ActivityQuery, batch: int) -> tuple[list[sqlite3.Row], PagingToken, bool]:
        """Up to ``batch`` activities after ``token``; the next token (a high-water mark) and whether more exist."""
        where = ["activity_ms >= ?", "(activity_ms > ? OR id > ?)"]
        params: list[Any] = [token.ms, token.ms, token.last_id]
        where.append(f"type_id IN ({','.join('?' * len(query.type_ids))})")
        params.extend(query.type_ids)
        if query.lead_ids:
            where.append(f"lead_id IN ({','.join('?' * len(query.lead_ids))})")
            params.extend(query.lead_ids)
        if query.list_id is not None:
            where.append("lead_id IN (SELECT lead_id FROM list_members WHERE list_id = ?)")
            params.append(query.list_id)
        if query.change_fields is not None:
            where.append(
                f"(type_id != {CHANGE_DATA_VALUE} OR field_name IN ({','.join('?' * len(query.change_fields))}))"
            )
            params.extend(query.change_fields)
        rows = self.db.query(
            f"SELECT {COLUMNS} FROM activities WHERE {' AND '.join(where)} ORDER BY activity_ms, id LIMIT ?",
            [*params, batch + 1],
        )
        more = len(rows) > batch
        rows = rows[:batch]
        next_token = PagingToken(int(rows[-1]["activity_ms"]), int(rows[-1]["id"])) if rows else token
        return rows, next_token, more


def render(row: sqlite3.Row, *, lead_changes: bool = False) -> dict[str, Any]:
    """One activity as the API returns it (``fields`` form for leadchanges, attribute form elsewhere)."""
    payload: dict[str, Any] = json.loads(row["payload"])
    item: dict[str, Any] = {
        "id": row["id"],
        "marketoGUID": str(row["id"]),
        "leadId": row["lead_id"],
        "activityDate": iso_ms(row["activity_ms"]),
        "activityTypeId": row["type_id"],
    }
    attributes: list[dict[str, Any]] = payload.get("attributes", [])
    if row["type_id"] == CHANGE_DATA_VALUE:
        change = payload["fields"][0]
        if lead_changes:
            item["fields"] = payload["fields"]
        else:
            item["primaryAttributeValueId"] = row["primary_id"]
            item["primaryAttributeValue"] = row["primary_value"]
            attributes = [
                {"name": "New Value", "value": change["newValue"]},
                {"name": "Old Value", "value": change["oldValue"]},
                *attributes,
            ]
    else:
        if row["primary_id"] is not None:
            item["primaryAttributeValueId"] = row["primary_id"]
        item["primaryAttributeValue"] = row["primary_value"]
    if row["type_id"] == DELETE_LEAD or attributes:
        item["attributes"] = attributes
    return item
