"""The real-time path's request queue: durable before a webhook is answered, bounded, drained in batches.

``mktdyn serve`` commits each accepted request here before it answers (docs/architecture.md §10), so a crash
with requests queued loses none: a request stays ``queued`` until the run that processed it records its
answer in the same store, and a restarted worker simply finds it again. Processing is idempotent (the
outbox's idempotency keys, links in ``pairs``), so a request processed by a run that died before it could say
so is processed again harmlessly. The queue is bounded: :func:`enqueue` refuses a request past
``limit`` rather than letting a burst grow the table (and the wait) without end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.core.vocabulary import RequestKind
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import StoreConnection

#: A request processed this many times without an answer (each attempt died) is given up, with a reason.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class QueuedRequest:
    """One accepted request, as the worker takes it."""

    request_id: int
    kind: RequestKind
    person_id: str
    dry_run: bool
    attempts: int


def enqueue(store: StoreConnection, kind: RequestKind, person_id: str, dry_run: bool, limit: int) -> int | None:
    """Commit a request; its id, or None when ``limit`` requests are already waiting (nothing is written).

    The count and the insert share one transaction. On PostgreSQL two concurrent inserts may both see room
    for one, so the bound can be passed by at most the number of concurrent requests: still a bound.
    """
    table = tables.realtime_requests
    with store.transaction() as connection:
        waiting = connection.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.status == "queued")
        ).scalar()
        if int(waiting or 0) >= limit:
            return None
        inserted = connection.execute(
            sa.insert(table).values(
                kind=kind, person_id=person_id, dry_run=dry_run, status="queued", attempts=0, received_at=now_iso()
            )
        )
        key = inserted.inserted_primary_key
        return int(key[0]) if key else 0


def queued_count(store: StoreConnection) -> int:
    """How many requests are waiting (``/readyz`` and the queue bound)."""
    table = tables.realtime_requests
    with store.transaction() as connection:
        value = connection.execute(sa.select(sa.func.count()).select_from(table).where(table.c.status == "queued"))
        return int(value.scalar() or 0)


def take(store: StoreConnection, limit: int) -> list[QueuedRequest]:
    """The oldest waiting requests (at most ``limit``), each counted as one more attempt.

    Called under the store's write lock, so no other worker takes the same ones; they stay ``queued`` until
    :func:`finish` records their answers, which is what makes a crash lose nothing.
    """
    table = tables.realtime_requests
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(table.c.request_id, table.c.kind, table.c.person_id, table.c.dry_run, table.c.attempts)
            .where(table.c.status == "queued")
            .order_by(table.c.request_id)
            .limit(limit)
        ).all()
        ids = [int(row.request_id) for row in rows]
        if ids:
            connection.execute(
                sa.update(table).where(table.c.request_id.in_(ids)).values(attempts=table.c.attempts + 1)
            )
    return [
        QueuedRequest(int(r.request_id), r.kind, str(r.person_id), bool(r.dry_run), int(r.attempts) + 1) for r in rows
    ]


def finish(store: StoreConnection, run_id: str | None, answers: Mapping[int, tuple[str, Mapping[str, Any]]]) -> None:
    """Record each request's outcome (``done`` or ``failed``) and the answer given for it, in one transaction."""
    if not answers:
        return
    table = tables.realtime_requests
    at = now_iso()
    with store.transaction() as connection:
        connection.execute(
            sa.update(table)
            .where(table.c.request_id == sa.bindparam("b_id"))
            .values(status=sa.bindparam("b_status"), result=sa.bindparam("b_result"), finished_at=at, run_id=run_id),
            [
                {"b_id": request_id, "b_status": status, "b_result": json.dumps(dict(answer), default=str)}
                for request_id, (status, answer) in answers.items()
            ],
        )


def answer_of(store: StoreConnection, request_id: int) -> tuple[str, dict[str, Any]] | None:
    """A request's status and recorded answer (None: no such request)."""
    table = tables.realtime_requests
    with store.transaction() as connection:
        row = connection.execute(
            sa.select(table.c.status, table.c.result).where(table.c.request_id == request_id)
        ).first()
    if row is None:
        return None
    return str(row.status), json.loads(row.result) if row.result else {}
