"""Custom activity types: a draft/approved lifecycle, as Marketo's "Read-Write Activity Metadata" API.

Each type keeps an approved version and a pending draft (status ``draft``, ``approved`` or
``approved with draft``). Ids are given from 100001 on creation and never reused. Only approved
versions can receive activities, and attribute changes apply to activities added after approval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mktdyn_sandbox.clock import SandboxClock, iso_z
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.store import run_script

FIRST_CUSTOM_TYPE_ID = 100001
MAX_TYPES = 10
MAX_ATTRIBUTES = 20
ATTRIBUTE_TYPES = frozenset(
    {"string", "boolean", "integer", "float", "link", "email", "currency", "date", "datetime", "phone", "text"}
)
REQUIRED = ("apiName", "name", "triggerName", "filterName", "primaryAttribute")

SCHEMA = """
CREATE TABLE IF NOT EXISTS custom_activity_types (
    api_name TEXT PRIMARY KEY,
    type_id INTEGER NOT NULL UNIQUE,
    approved TEXT,
    draft TEXT,
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL
);
"""


class CustomTypeError(ValueError):
    """A refused type operation, with the Marketo code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CustomType:
    """One stored custom activity type."""

    api_name: str
    type_id: int
    approved: dict[str, Any] | None
    draft: dict[str, Any] | None
    created_ts: float
    updated_ts: float

    @property
    def status(self) -> str:
        """``draft``, ``approved`` or ``approved with draft``."""
        if self.approved is None:
            return "draft"
        return "approved with draft" if self.draft is not None else "approved"

    def describe(self, *, draft: bool = False) -> dict[str, Any]:
        """The type as describe/types return it (the draft version when asked and present)."""
        version = (self.draft if draft else None) or self.approved or self.draft or {}
        return {
            "id": self.type_id,
            **version,
            "createdAt": iso_z_ts(self.created_ts),
            "updatedAt": iso_z_ts(self.updated_ts),
            "status": self.status,
        }


def iso_z_ts(ts: float) -> str:
    """Seconds since the epoch as ``...Z``."""
    return iso_z(datetime.fromtimestamp(ts, tz=UTC))


def _attribute(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("apiName") or not raw.get("name"):
        raise CustomTypeError("1003", "Each attribute needs 'apiName' and 'name'")
    data_type = str(raw.get("dataType") or "string")
    if data_type not in ATTRIBUTE_TYPES:
        raise CustomTypeError("1003", f"Invalid dataType '{data_type}' for attribute '{raw['apiName']}'")
    item = {"apiName": str(raw["apiName"]), "name": str(raw["name"]), "dataType": data_type}
    if raw.get("description"):
        item["description"] = str(raw["description"])
    return item


class CustomTypes:
    """The custom activity type catalogue in SQLite."""

    def __init__(self, db: Database, clock: SandboxClock) -> None:
        self.db = db
        self.clock = clock
        run_script(db, SCHEMA)

    def all(self) -> list[CustomType]:
        """Every type, by id."""
        rows = self.db.query("SELECT * FROM custom_activity_types ORDER BY type_id")
        return [self._from_row(row) for row in rows]

    @staticmethod
    def _from_row(row: Any) -> CustomType:
        return CustomType(
            row["api_name"],
            int(row["type_id"]),
            json.loads(row["approved"]) if row["approved"] else None,
            json.loads(row["draft"]) if row["draft"] else None,
            row["created_ts"],
            row["updated_ts"],
        )

    def get(self, api_name: str) -> CustomType:
        """A type by apiName; 1013 when there is none."""
        row = self.db.query_one("SELECT * FROM custom_activity_types WHERE api_name = ?", (api_name,))
        if row is None:
            raise CustomTypeError("1013", f"Activity type '{api_name}' not found")
        return self._from_row(row)

    def approved_by_id(self, type_id: int) -> dict[str, Any] | None:
        """The approved version of a type (what new activities are validated against)."""
        row = self.db.query_one("SELECT approved FROM custom_activity_types WHERE type_id = ?", (type_id,))
        return json.loads(row["approved"]) if row is not None and row["approved"] else None

    def _save(self, kind: CustomType) -> CustomType:
        kind.updated_ts = self.clock.time()
        self.db.execute(
            "INSERT INTO custom_activity_types VALUES (?,?,?,?,?,?) ON CONFLICT(api_name) DO UPDATE SET "
            "approved = excluded.approved, draft = excluded.draft, updated_ts = excluded.updated_ts",
            (
                kind.api_name,
                kind.type_id,
                json.dumps(kind.approved) if kind.approved else None,
                json.dumps(kind.draft) if kind.draft else None,
                kind.created_ts,
                kind.updated_ts,
            ),
        )
        return kind

    def create(self, body: dict[str, Any]) -> CustomType:
        """A new type in ``draft`` status (1027 past ten types)."""
        missing = [key for key in REQUIRED if not body.get(key)]
        if missing:
            raise CustomTypeError("1003", f"Required field '{missing[0]}' not specified")
        primary = body["primaryAttribute"]
        if not isinstance(primary, dict) or not primary.get("apiName") or not primary.get("name"):
            raise CustomTypeError("1003", "primaryAttribute needs 'apiName' and 'name'")
        with self.db.transaction():
            existing = self.all()
            if any(kind.api_name == body["apiName"] for kind in existing):
                raise CustomTypeError("1003", f"Activity type with apiName '{body['apiName']}' already exists")
            if len(existing) >= MAX_TYPES:
                raise CustomTypeError("1027", f"Max limit of {MAX_TYPES} custom activity types reached")
            row = self.db.query_one("SELECT MAX(type_id) FROM custom_activity_types")
            type_id = max(FIRST_CUSTOM_TYPE_ID - 1, int(row[0] or 0) if row else 0) + 1
            draft: dict[str, Any] = {
                key: str(body[key])
                for key in ("apiName", "name", "description", "triggerName", "filterName")
                if body.get(key)
            }
            draft["primaryAttribute"] = _attribute({**primary, "dataType": primary.get("dataType", "string")})
            draft["attributes"] = []
            now = self.clock.time()
            return self._save(CustomType(str(body["apiName"]), type_id, None, draft, now, now))

    def _draft_of(self, kind: CustomType) -> dict[str, Any]:
        if kind.draft is None:
            kind.draft = json.loads(json.dumps(kind.approved))
        return kind.draft

    def update(self, api_name: str, body: dict[str, Any]) -> CustomType:
        """Change the draft's names and description."""
        kind = self.get(api_name)
        draft = self._draft_of(kind)
        for key in ("name", "description", "triggerName", "filterName"):
            if body.get(key):
                draft[key] = str(body[key])
        if isinstance(body.get("primaryAttribute"), dict):
            draft["primaryAttribute"].update(
                {k: str(v) for k, v in body["primaryAttribute"].items() if k in ("name", "description")}
            )
        return self._save(kind)

    def approve(self, api_name: str) -> CustomType:
        """Publish the draft."""
        kind = self.get(api_name)
        if kind.draft is None:
            raise CustomTypeError("1003", f"Activity type '{api_name}' has no draft to approve")
        kind.approved, kind.draft = kind.draft, None
        return self._save(kind)

    def discard_draft(self, api_name: str) -> CustomType:
        """Drop the draft of an approved type."""
        kind = self.get(api_name)
        if kind.approved is None:
            raise CustomTypeError("1003", f"Activity type '{api_name}' was never approved; delete it instead")
        kind.draft = None
        return self._save(kind)

    def delete(self, api_name: str) -> CustomType:
        """Remove a type."""
        kind = self.get(api_name)
        self.db.execute("DELETE FROM custom_activity_types WHERE api_name = ?", (api_name,))
        return kind

    def change_attributes(self, api_name: str, operation: str, attributes: Any) -> CustomType:
        """``create``, ``update`` or ``delete`` secondary attributes on the draft (1028 past twenty)."""
        if not isinstance(attributes, list) or not attributes:
            raise CustomTypeError("1003", "Required field 'attributes' not specified")
        kind = self.get(api_name)
        draft = self._draft_of(kind)
        current: list[dict[str, Any]] = draft.setdefault("attributes", [])
        names = {attr["apiName"] for attr in current}
        for raw in attributes:
            if operation == "delete":
                api = raw.get("apiName") if isinstance(raw, dict) else None
                if api not in names:
                    raise CustomTypeError("1013", f"Attribute '{api}' not found")
                current[:] = [attr for attr in current if attr["apiName"] != api]
                names.discard(api)
                continue
            item = _attribute(raw) if operation == "create" else {**raw}
            if operation == "create":
                if item["apiName"] in names or item["apiName"] == draft["primaryAttribute"]["apiName"]:
                    raise CustomTypeError("1003", f"Attribute '{item['apiName']}' already exists")
                if len(current) >= MAX_ATTRIBUTES:
                    raise CustomTypeError("1028", f"Max limit of {MAX_ATTRIBUTES} attributes reached")
                current.append(item)
                names.add(item["apiName"])
            else:
                target = next((attr for attr in current if attr["apiName"] == item.get("apiName")), None)
                if target is None:
                    raise CustomTypeError("1013", f"Attribute '{item.get('apiName')}' not found")
                target.update({k: str(v) for k, v in item.items() if k in ("name", "description")})
        return self._save(kind)
