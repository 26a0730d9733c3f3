"""What one planning pass has done so far, in the store (``run_marks``), not in Python sets.

The planner must not decide on a person twice in one pass (a lead and a contact can lead to the same person) nor
plan two persons' creates for one email. Kept in sets, those grew with every person of an initial sync (about
19 MiB per 100,000 persons); here each batch asks for the marks among the ids and emails it is about to read
(one query) and writes the marks it made with its decisions (in the batch's transaction), so memory is bounded
by the batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK

#: A person the pass decided on (matched, merged, linked, skipped or deleted).
PERSON = "person"
#: A normalized email the pass planned a Marketo person's create for.
CREATE_EMAIL = "create_email"


def marked_among(connection: sa.Connection, run_id: str, kind: str, candidates: Iterable[str]) -> set[str]:
    """Which of ``candidates`` the pass ``run_id`` has marked ``kind``."""
    table = tables.run_marks
    wanted = sorted({c for c in candidates if c})
    found: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        rows = connection.execute(
            sa.select(table.c.mark).where(
                table.c.run_id == run_id, table.c.kind == kind, table.c.mark.in_(wanted[start : start + CHUNK])
            )
        )
        found.update(str(mark) for mark in rows.scalars())
    return found


def add_marks(connection: sa.Connection, run_id: str, kind: str, marks: Iterable[str]) -> None:
    """Mark these (those already marked are left as they are)."""
    new = sorted({m for m in marks if m} - marked_among(connection, run_id, kind, marks))
    if new:
        connection.execute(sa.insert(tables.run_marks), [{"run_id": run_id, "kind": kind, "mark": m} for m in new])


def clear_marks(connection: sa.Connection, run_id: str) -> None:
    """Delete this pass's marks, and those of passes no longer running (a crashed pass leaves its own)."""
    runs = tables.runs
    running = sa.select(runs.c.run_id).where(runs.c.status == "running", runs.c.run_id != run_id)
    table = tables.run_marks
    connection.execute(sa.delete(table).where(table.c.run_id.not_in(running)))
