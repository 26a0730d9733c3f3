"""SQLite storage of persons and static lists (``DIR/marketo.db``).

A person row keeps the columns the API filters or sorts on (id, email and its case-folded key,
created/updated times) and the other field values as one JSON document, so the field catalogue can grow
without migrations. Two update times exist, as in Marketo: ``updated_ts`` is the visible ``updatedAt``
(moved only by standard-field changes) and ``changed_ts`` is the time of the last change to any field,
which is what a bulk export's ``updatedAt`` filter sees. Secondary indexes are built after the seed, which
is several times faster than maintaining them row by row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.fields import CORE_FIELDS, FIELDS

SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT,
    email_key TEXT,
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL,
    changed_ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    program_name TEXT,
    created_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS list_members (
    list_id INTEGER NOT NULL,
    lead_id INTEGER NOT NULL,
    PRIMARY KEY (list_id, lead_id)
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS persons_email_key ON persons (email_key);
CREATE INDEX IF NOT EXISTS persons_created ON persons (created_ts);
CREATE INDEX IF NOT EXISTS persons_changed ON persons (changed_ts);
""" + "".join(
    # The integration looks persons up by its Dynamics ids: index the searchable custom fields.
    f"CREATE INDEX IF NOT EXISTS persons_{spec.name} ON persons (json_extract(data, '$.{spec.name}'));\n"
    for spec in FIELDS.values()
    if spec.custom and spec.searchable
)

#: Static lists of the seed: (id, name, description, program, which seeded ids belong).
SEED_LISTS: tuple[tuple[int, str, str, str, range], ...] = (
    (1001, "Sync Pilot", "Persons in the first sync wave", "Dynamics Sync Pilot", range(1, 51)),
    (1002, "Webinar Attendees", "Attended the spring webinar", "Spring Webinar", range(51, 151, 2)),
)


def run_script(db: Database, script: str) -> None:
    """Run semicolon-separated DDL statements one by one (each is its own transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def email_key(email: str | None) -> str | None:
    """The dedupe key of an email: Marketo matches emails case-insensitively."""
    return None if email is None else email.strip().casefold()


def to_ts(iso: str) -> float:
    """Epoch seconds of a ``...Z`` timestamp."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def iso_from_ts(ts: float) -> str:
    """A ``YYYY-MM-DDTHH:MM:SSZ`` timestamp (Marketo's lead datetime format)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def full_name(fields: dict[str, Any]) -> str:
    """``mktoName``: first and last name, as Marketo derives it."""
    return " ".join(part for part in (fields.get("firstName"), fields.get("lastName")) if part)


def row_to_person(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """A stored row as a person dict in REST names (absent JSON keys mean null)."""
    person_id, email, created_ts, updated_ts, data = row[0], row[1], row[2], row[3], row[4]
    person: dict[str, Any] = json.loads(data)
    person.update(id=person_id, email=email, createdAt=iso_from_ts(created_ts), updatedAt=iso_from_ts(updated_ts))
    person["mktoName"] = full_name(person) or None
    return person


def document(fields: dict[str, Any]) -> str:
    """The JSON document of the non-core fields (nulls left out to keep a million rows small)."""
    return json.dumps(
        {k: v for k, v in fields.items() if k not in CORE_FIELDS and k != "mktoName" and v is not None},
        ensure_ascii=False,
        separators=(",", ":"),
    )


PERSON_COLUMNS = "id, email, created_ts, updated_ts, data, changed_ts"


class PersonStore:
    """Queries over the persons and lists tables; callers hold no rows beyond one page."""

    def __init__(self, db: Database) -> None:
        self.db = db
        run_script(db, SCHEMA)

    # -- seeding ----------------------------------------------------------------------------------
    @staticmethod
    def seed_rows(conn: sqlite3.Connection, persons: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Insert one chunk of seeded persons (ids given) inside the caller's transaction."""
        conn.executemany(
            "INSERT INTO persons (id, email, email_key, created_ts, updated_ts, changed_ts, data)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (
                    pid,
                    p.get("email"),
                    email_key(p.get("email")),
                    to_ts(p["createdAt"]),
                    to_ts(p["updatedAt"]),
                    to_ts(p["updatedAt"]),
                    document(p),
                )
                for pid, p in persons
            ],
        )

    def seed_lists(self, persons: int, now: float) -> None:
        """Create the static lists (members limited to the seeded ids)."""
        with self.db.transaction() as conn:
            for list_id, name, description, program, members in SEED_LISTS:
                conn.execute(
                    "INSERT OR IGNORE INTO lists VALUES (?,?,?,?,?)", (list_id, name, description, program, now)
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO list_members VALUES (?,?)",
                    [(list_id, lead_id) for lead_id in members if lead_id <= persons],
                )

    def build_indexes(self) -> None:
        """Create the secondary indexes (after the bulk load)."""
        run_script(self.db, INDEXES)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, person_id: int) -> dict[str, Any] | None:
        """One person by id."""
        row = self.db.query_one(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = ?", (person_id,))
        return None if row is None else row_to_person(row)

    def changed_ts(self, person_id: int) -> float | None:
        """The internal time of the last change to any field."""
        row = self.db.query_one("SELECT changed_ts FROM persons WHERE id = ?", (person_id,))
        return None if row is None else float(row[0])

    @staticmethod
    def _filter_sql(filter_type: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        marks = ",".join("?" * len(values))
        if filter_type == "id":
            return f"id IN ({marks})", [int(v) for v in values]
        if filter_type == "email":
            return f"email_key IN ({marks})", [email_key(v) for v in values]
        spec = FIELDS[filter_type]
        params: list[Any] = [int(v) if spec.data_type in ("integer", "reference") else v for v in values]
        return f"json_extract(data, '$.{filter_type}') IN ({marks})", params

    def count_matching(self, filter_type: str, values: Sequence[str], cap: int) -> int:
        """How many persons match, counting at most ``cap`` (enough to say "too many")."""
        where, params = self._filter_sql(filter_type, values)
        row = self.db.query_one(f"SELECT COUNT(*) FROM (SELECT 1 FROM persons WHERE {where} LIMIT ?)", [*params, cap])
        return int(row[0]) if row else 0

    def page_matching(self, filter_type: str, values: Sequence[str], after_id: int, limit: int) -> list[dict[str, Any]]:
        """Matching persons with id > ``after_id``, in id order."""
        where, params = self._filter_sql(filter_type, values)
        rows = self.db.query(
            f"SELECT {PERSON_COLUMNS} FROM persons WHERE {where} AND id > ? ORDER BY id LIMIT ?",
            [*params, after_id, limit],
        )
        return [row_to_person(row) for row in rows]

    def page_list_members(self, list_id: int, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Members of a static list with id > ``after_id``, in id order."""
        rows = self.db.query(
            f"SELECT {', '.join('p.' + c.strip() for c in PERSON_COLUMNS.split(','))} FROM list_members m "
            "JOIN persons p ON p.id = m.lead_id WHERE m.list_id = ? AND m.lead_id > ? ORDER BY m.lead_id LIMIT ?",
            (list_id, after_id, limit),
        )
        return [row_to_person(row) for row in rows]

    def find_by(self, field: str, value: Any) -> list[dict[str, Any]]:
        """Persons whose ``field`` equals ``value`` (at most a few; used as a write lookup)."""
        if field == "id":
            person = self.get(int(value))
            return [] if person is None else [person]
        return self.page_matching(field, [str(value)], 0, 10)

    def lists(self) -> list[sqlite3.Row]:
        """All static lists."""
        return self.db.query("SELECT id, name, description, program_name, created_ts FROM lists ORDER BY id")

    def list_by_name(self, name: str) -> int | None:
        """A static list's id by its name."""
        row = self.db.query_one("SELECT id FROM lists WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def list_exists(self, list_id: int) -> bool:
        """Whether a static list exists."""
        return self.db.query_one("SELECT 1 FROM lists WHERE id = ?", (list_id,)) is not None

    # -- writes (inside the caller's transaction) -------------------------------------------------
    @staticmethod
    def insert(conn: sqlite3.Connection, fields: dict[str, Any], now: float) -> int:
        """Create a person; return its new id (never reused, like Marketo's)."""
        cursor = conn.execute(
            "INSERT INTO persons (email, email_key, created_ts, updated_ts, changed_ts, data) VALUES (?,?,?,?,?,?)",
            (fields.get("email"), email_key(fields.get("email")), now, now, now, document(fields)),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def update(conn: sqlite3.Connection, person: dict[str, Any], *, visible: bool, now: float) -> None:
        """Store a changed person; ``visible`` moves ``updatedAt`` too (standard fields changed)."""
        sql = (
            "UPDATE persons SET email = ?, email_key = ?, data = ?, changed_ts = ?"
            + (", updated_ts = ?" if visible else "")
            + " WHERE id = ?"
        )
        params: list[Any] = [person.get("email"), email_key(person.get("email")), document(person), now]
        if visible:
            params.append(now)
        conn.execute(sql, [*params, person["id"]])

    @staticmethod
    def delete(conn: sqlite3.Connection, person_id: int) -> None:
        """Remove a person and its list memberships."""
        conn.execute("DELETE FROM persons WHERE id = ?", (person_id,))
        conn.execute("DELETE FROM list_members WHERE lead_id = ?", (person_id,))


def stream_for_export(path: str, where: str, params: Iterable[Any], batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Persons matching an export filter, read through a private read-only connection in id order.

    WAL lets this reader see a consistent snapshot while the API keeps writing, and ``fetchmany``
    keeps memory flat whatever the number of rows.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        cursor = conn.execute(f"SELECT {PERSON_COLUMNS} FROM persons WHERE {where} ORDER BY id", list(params))
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            for row in rows:
                yield row_to_person(row)
    finally:
        conn.close()
