"""SQLite storage of lead and contact rows, their versions, and the deletions change tracking reports.

Every write takes the next value of one database-wide counter as the row's ``versionnumber`` (as
Dataverse's rowversion does), which gives ETags and change tracking the same source of truth: a delta
is "rows with a version above the token's, then deletions above it". Rows keep an insertion sequence
for keyset paging, so a page costs one indexed range scan however deep the client is, and memory stays
bounded by the page size.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mktdyn_sandbox.db import Database

ENTITY_TABLES = ("lead", "contact")
SEED_CHUNK = 5000


@dataclass(frozen=True)
class StoredRow:
    """One row as stored: keys and system columns outside the JSON blob, the rest in ``data``."""

    seq: int
    id: str
    version: int
    createdon: str
    modifiedon: str
    data: dict[str, Any]
    sort_keys: tuple[Any, ...] = ()

    def values(self) -> dict[str, Any]:
        """Every stored value by read name, system columns included."""
        return {**self.data, "versionnumber": self.version, "createdon": self.createdon, "modifiedon": self.modifiedon}


@dataclass(frozen=True)
class Deletion:
    """A deleted row as change tracking reports it."""

    id: str
    version: int
    deletedon: str


@dataclass(frozen=True)
class OrderKey:
    """One ``ORDER BY`` term: a whitelisted SQL expression, direction, and case-insensitive collation."""

    sql: str
    descending: bool = False
    nocase: bool = False

    def term(self) -> str:
        """The expression with its collation."""
        return f"{self.sql} COLLATE NOCASE" if self.nocase else self.sql


def _table(entity: str) -> str:
    if entity not in ENTITY_TABLES:
        raise ValueError(f"unknown entity {entity!r}")
    return f"{entity}_rows"


def _deleted(entity: str) -> str:
    _table(entity)
    return f"{entity}_deleted"


def folded_email(data: dict[str, Any]) -> str | None:
    """The case-folded email kept in its own indexed column (matching by email is the sync's hot path)."""
    email = data.get("emailaddress1")
    return email.casefold() if isinstance(email, str) else None


def keyset_condition(order: list[OrderKey], after: tuple[Any, ...], after_seq: int) -> tuple[str, list[Any]]:
    """Rows strictly after ``after`` (+ ``after_seq``) in ``ORDER BY order..., seq``; NULLs sort low.

    SQLite puts NULL first ascending and last descending, which is what these comparisons encode.
    """
    clauses: list[str] = []
    params: list[Any] = []
    equal_prefix: list[str] = []
    equal_params: list[Any] = []
    for key, value in zip(order, after, strict=True):
        term = key.term()
        if value is None:
            beyond = "0" if key.descending else f"{key.sql} IS NOT NULL"
            beyond_params: list[Any] = []
            same, same_params = f"{key.sql} IS NULL", []
        elif key.descending:
            beyond, beyond_params = f"({term} < ? OR {key.sql} IS NULL)", [value]
            same, same_params = f"{term} = ?", [value]
        else:
            beyond, beyond_params = f"{term} > ?", [value]
            same, same_params = f"{term} = ?", [value]
        clauses.append("(" + " AND ".join([*equal_prefix, beyond]) + ")")
        params += equal_params + beyond_params
        equal_prefix.append(same)
        equal_params = equal_params + same_params
    clauses.append("(" + " AND ".join([*equal_prefix, "seq > ?"]) + ")")
    params += [*equal_params, after_seq]
    return "(" + " OR ".join(clauses) + ")", params


class Store:
    """The rows of both tables in ``dynamics.db`` under the sandbox directory."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path)
        self._version_lock = threading.Lock()
        for entity in ENTITY_TABLES:
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {_table(entity)} (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "versionnumber INTEGER NOT NULL, createdon TEXT NOT NULL, modifiedon TEXT NOT NULL, email TEXT, "
                "data TEXT NOT NULL)"
            )
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {_deleted(entity)} (versionnumber INTEGER PRIMARY KEY, "
                "id TEXT NOT NULL, deletedon TEXT NOT NULL)"
            )
        if self.is_seeded():
            self.create_indexes()
        self._version = self._max_version()

    # -- lifecycle --------------------------------------------------------------------------------------
    def _max_version(self) -> int:
        highest = 0
        for entity in ENTITY_TABLES:
            for table in (_table(entity), _deleted(entity)):
                row = self.db.query_one(f"SELECT MAX(versionnumber) AS v FROM {table}")
                highest = max(highest, int(row["v"] or 0) if row is not None else 0)
        return highest

    def create_indexes(self) -> None:
        """Indexes for delta queries, modifiedon bookmarks and email matching (built after a bulk seed)."""
        for entity in ENTITY_TABLES:
            table = _table(entity)
            self.db.execute(f"CREATE INDEX IF NOT EXISTS {table}_version ON {table}(versionnumber)")
            self.db.execute(f"CREATE INDEX IF NOT EXISTS {table}_modified ON {table}(modifiedon, seq)")
            self.db.execute(f"CREATE INDEX IF NOT EXISTS {table}_email ON {table}(email)")

    def is_seeded(self) -> bool:
        """Whether the seed has been loaded into this database."""
        return self.db.get_meta("seeded") == "1"

    def mark_seeded(self) -> None:
        """Record that the seed is complete (and index the loaded rows)."""
        self.create_indexes()
        self.db.set_meta("seeded", "1")

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All writes in the block commit together or not at all (nestable, for ``$batch`` changesets)."""
        with self.db.savepoint():
            yield

    def next_version(self) -> int:
        """The next value of the database-wide row version counter."""
        with self._version_lock:
            self._version += 1
            return self._version

    @property
    def current_version(self) -> int:
        """The highest version handed out so far (a change-tracking snapshot)."""
        with self._version_lock:
            return self._version

    # -- reads ------------------------------------------------------------------------------------------
    @staticmethod
    def _row(row: Any, sort_count: int = 0) -> StoredRow:
        keys = tuple(row[f"k{i}"] for i in range(sort_count))
        return StoredRow(
            int(row["seq"]),
            str(row["id"]),
            int(row["versionnumber"]),
            str(row["createdon"]),
            str(row["modifiedon"]),
            json.loads(row["data"]),
            keys,
        )

    def get(self, entity: str, record_id: str) -> StoredRow | None:
        """One row by primary key."""
        row = self.db.query_one(f"SELECT * FROM {_table(entity)} WHERE id = ?", (record_id.lower(),))
        return None if row is None else self._row(row)

    def find(self, entity: str, where: str, params: list[Any]) -> StoredRow | None:
        """The first row (in insertion order) matching a whitelisted condition."""
        row = self.db.query_one(f"SELECT * FROM {_table(entity)} WHERE {where} ORDER BY seq LIMIT 1", params)
        return None if row is None else self._row(row)

    def page(
        self,
        entity: str,
        where: str,
        params: list[Any],
        order: list[OrderKey],
        after: tuple[tuple[Any, ...], int] | None,
        limit: int,
    ) -> list[StoredRow]:
        """Up to ``limit`` rows matching ``where`` in ``order`` (then insertion order), after a keyset position."""
        selected = "".join(f", {key.sql} AS k{i}" for i, key in enumerate(order))
        conditions, arguments = [where], list(params)
        if after is not None:
            condition, extra = keyset_condition(order, after[0], after[1])
            conditions.append(condition)
            arguments += extra
        ordering = ", ".join([*(f"{k.term()} {'DESC' if k.descending else 'ASC'}" for k in order), "seq ASC"])
        rows = self.db.query(
            f"SELECT seq, id, versionnumber, createdon, modifiedon, data{selected} "
            f"FROM {_table(entity)} WHERE {' AND '.join(conditions)} ORDER BY {ordering} LIMIT ?",
            [*arguments, limit],
        )
        return [self._row(row, len(order)) for row in rows]

    def count(self, entity: str, where: str, params: list[Any], cap: int) -> int:
        """How many rows match, counting at most ``cap`` (Dataverse caps ``$count`` at 5000)."""
        row = self.db.query_one(
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {_table(entity)} WHERE {where} LIMIT ?)", [*params, cap]
        )
        return int(row["n"]) if row is not None else 0

    def changed(self, entity: str, above: int, upto: int, limit: int) -> list[StoredRow]:
        """Rows written after version ``above`` and no later than ``upto``, oldest change first."""
        rows = self.db.query(
            f"SELECT * FROM {_table(entity)} WHERE versionnumber > ? AND versionnumber <= ? "
            "ORDER BY versionnumber LIMIT ?",
            (above, upto, limit),
        )
        return [self._row(row) for row in rows]

    def deletions(self, entity: str, above: int, upto: int, limit: int) -> list[Deletion]:
        """Deletions recorded after version ``above`` and no later than ``upto``."""
        rows = self.db.query(
            f"SELECT * FROM {_deleted(entity)} WHERE versionnumber > ? AND versionnumber <= ? "
            "ORDER BY versionnumber LIMIT ?",
            (above, upto, limit),
        )
        return [Deletion(str(r["id"]), int(r["versionnumber"]), str(r["deletedon"])) for r in rows]

    # -- writes -----------------------------------------------------------------------------------------
    def insert(
        self, entity: str, record_id: str, data: dict[str, Any], now: str, createdon: str | None = None
    ) -> StoredRow:
        """Store a new row with the next version."""
        with self.db.savepoint() as conn:
            version = self.next_version()
            created = createdon or now
            cursor = conn.execute(
                f"INSERT INTO {_table(entity)} (id, versionnumber, createdon, modifiedon, email, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (record_id.lower(), version, created, now, folded_email(data), json.dumps(data, ensure_ascii=False)),
            )
            seq = int(cursor.lastrowid or 0)
        return StoredRow(seq, record_id.lower(), version, created, now, data)

    def replace(self, entity: str, row: StoredRow, data: dict[str, Any], now: str) -> StoredRow:
        """Store new values for an existing row, bumping its version and ``modifiedon``."""
        with self.db.savepoint() as conn:
            version = self.next_version()
            conn.execute(
                f"UPDATE {_table(entity)} SET versionnumber = ?, modifiedon = ?, email = ?, data = ? WHERE id = ?",
                (version, now, folded_email(data), json.dumps(data, ensure_ascii=False), row.id),
            )
        return StoredRow(row.seq, row.id, version, row.createdon, now, data)

    def delete(self, entity: str, record_id: str, now: str) -> bool:
        """Remove a row and record the deletion for change tracking; False when there was none."""
        with self.db.savepoint() as conn:
            cursor = conn.execute(f"DELETE FROM {_table(entity)} WHERE id = ?", (record_id.lower(),))
            if cursor.rowcount == 0:
                return False
            conn.execute(
                f"INSERT INTO {_deleted(entity)} (versionnumber, id, deletedon) VALUES (?, ?, ?)",
                (self.next_version(), record_id.lower(), now),
            )
        return True

    def bulk_insert(self, rows: Iterable[tuple[str, str, dict[str, Any], str, str]]) -> int:
        """Insert ``(entity, id, data, createdon, modifiedon)`` rows in chunks (seeding, benchmarks).

        Memory stays at one chunk per table whatever the number of rows.
        """
        pending: dict[str, list[tuple[Any, ...]]] = {entity: [] for entity in ENTITY_TABLES}
        total = 0

        def flush(entity: str) -> None:
            with self.db.savepoint() as conn:
                conn.executemany(
                    f"INSERT INTO {_table(entity)} (id, versionnumber, createdon, modifiedon, email, "
                    "data) VALUES (?, ?, ?, ?, ?, ?)",
                    pending[entity],
                )
            pending[entity].clear()

        for entity, record_id, data, created, modified in rows:
            pending[entity].append(
                (
                    record_id.lower(),
                    self.next_version(),
                    created,
                    modified,
                    folded_email(data),
                    json.dumps(data, ensure_ascii=False),
                )
            )
            total += 1
            if len(pending[entity]) >= SEED_CHUNK:
                flush(entity)
        for entity in ENTITY_TABLES:
            if pending[entity]:
                flush(entity)
        return total
