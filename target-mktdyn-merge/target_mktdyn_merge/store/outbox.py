"""The outbox: every write is planned in the store before it is sent and confirmed after (docs/architecture.md §4).

A dry run plans with status ``dry_run``: the report shows exactly what would be written, and nothing is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.values import dumps, now_iso
from target_mktdyn_merge.core.writes import OutboxContext, OutboxEntry, PlannedWrite
from target_mktdyn_merge.store import schema as tables


def plan_writes(connection: sa.Connection, run_id: str, writes: Iterable[PlannedWrite], status: str = "planned") -> int:
    """Record writes in the outbox (``status`` is ``dry_run`` in a dry run)."""
    at = now_iso()
    rows = [
        {
            "run_id": run_id,
            "pair_id": w.pair_id,
            "system": w.system,
            "action": w.action,
            "entity": w.entity,
            "target_id": w.target_id,
            "idempotency_key": w.idempotency_key,
            "payload": dumps(dict(w.payload)),
            "context": dumps(replace(w.context, activity=w.activity).to_dict()),
            "status": status,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        for w in writes
    ]
    if rows:
        connection.execute(sa.insert(tables.outbox), rows)
    return len(rows)


#: Entries still owed: planned, in doubt (sent, no answer seen), or waiting for a retry.
OWED = ("planned", "sent", "failed", "invalid", "deferred")
#: Entries a newer plan for the same record replaces (an entry in doubt must be resolved first).
REPLACEABLE = ("planned", "failed", "invalid", "deferred")


def supersede(connection: sa.Connection, writes: Iterable[PlannedWrite]) -> int:
    """Retire owed entries that a newer plan for the same record replaces; return how many.

    Set-based (one statement per system and 500 keys) rather than one statement per write: planning an
    initial sync supersedes nothing but used to pay a scan of the owed entries for every planned write.
    """
    outbox = tables.outbox
    keys: dict[str, set[str]] = {}
    targets: dict[str, set[str]] = {}
    for write in writes:
        if write.idempotency_key:
            keys.setdefault(write.system, set()).add(write.idempotency_key)
        elif write.target_id and write.action in ("update", "flag"):
            targets.setdefault(write.system, set()).add(write.target_id)
    matches: list[sa.ColumnElement[bool]] = []
    for system, values in keys.items():
        ordered = sorted(values)
        matches += [
            sa.and_(outbox.c.system == system, outbox.c.idempotency_key.in_(ordered[start : start + 500]))
            for start in range(0, len(ordered), 500)
        ]
    for system, values in targets.items():
        ordered = sorted(values)
        matches += [
            sa.and_(
                outbox.c.system == system,
                outbox.c.target_id.in_(ordered[start : start + 500]),
                outbox.c.action.in_(["update", "flag"]),
            )
            for start in range(0, len(ordered), 500)
        ]
    retired = 0
    for match in matches:
        result = connection.execute(
            sa.update(outbox)
            .where(match, outbox.c.status.in_(REPLACEABLE))
            .values(status="superseded", updated_at=now_iso())
        )
        retired += result.rowcount or 0
    return retired


def due_entries(connection: sa.Connection, now: str, after_op_id: int = 0, limit: int = 1000) -> list[OutboxEntry]:
    """Owed entries whose turn has come, oldest first, a page at a time (bounded memory)."""
    outbox = tables.outbox
    rows = connection.execute(
        sa.select(outbox)
        .where(
            outbox.c.op_id > after_op_id,
            sa.or_(
                outbox.c.status.in_(["planned", "sent"]),
                sa.and_(
                    outbox.c.status.in_(["failed", "invalid", "deferred"]),
                    sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
                ),
            ),
        )
        .order_by(outbox.c.op_id)
        .limit(limit)
    ).all()
    return [
        OutboxEntry(
            op_id=row.op_id,
            run_id=row.run_id,
            pair_id=row.pair_id,
            system=row.system,
            action=row.action,
            entity=row.entity,
            target_id=row.target_id,
            idempotency_key=row.idempotency_key,
            payload=json.loads(row.payload),
            context=OutboxContext.from_dict(json.loads(row.context)),
            status=row.status,
            attempts=row.attempts,
        )
        for row in rows
    ]


def mark(
    connection: sa.Connection,
    op_ids: Iterable[int],
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    next_attempt_at: str | None = None,
    count_attempt: bool = False,
    payload: Mapping[str, Any] | None = None,
    context: OutboxContext | None = None,
) -> None:
    """Move entries to ``status`` (with the error seen and when to try again)."""
    outbox = tables.outbox
    values: dict[str, Any] = {
        "status": status,
        "updated_at": now_iso(),
        "error_code": error_code,
        "error_message": error_message,
        "next_attempt_at": next_attempt_at,
    }
    if count_attempt:
        values["attempts"] = outbox.c.attempts + 1
    if payload is not None:
        values["payload"] = dumps(dict(payload))
    if context is not None:
        values["context"] = dumps(context.to_dict())
    ids = list(op_ids)
    for start in range(0, len(ids), 500):
        connection.execute(sa.update(outbox).where(outbox.c.op_id.in_(ids[start : start + 500])).values(**values))


def owed_by_kind(connection: sa.Connection) -> dict[tuple[str, str], int]:
    """Writes owed to either system, counted by (system, action): what the next write phase would send."""
    outbox = tables.outbox
    rows = connection.execute(
        sa.select(outbox.c.system, outbox.c.action, sa.func.count())
        .where(outbox.c.status.in_(OWED))
        .group_by(outbox.c.system, outbox.c.action)
    ).all()
    return {(str(system), str(action)): int(count) for system, action, count in rows}


def established_changes(connection: sa.Connection, run_id: str) -> tuple[int, int]:
    """(established pairs with an update owed, established pairs): the change-ratio breaker's numbers.

    Established: linked, and first merged, by earlier runs that are settled: runs that succeeded, and runs that
    did not (a crash, a stop) but started before a merge that succeeded, which sent what they left owed. A pair
    linked in this run, or by a run that crashed or stopped before finishing its first merge and no merge has
    succeeded since, or linked without a first merge (a create the other system refused as a duplicate links the
    existing record; its first merge is the next run's), gets that first merge now, which may fill many fields by
    design; an established pair was in step, so most of them changing at once is a mistake (a wrong field map, a
    bulk edit) until someone says otherwise. A pair updated on both sides counts once. (A NULL
    ``first_merged_run`` is a first merge from before the store recorded it.)
    """
    outbox, pairs, runs = tables.outbox, tables.pairs, tables.runs
    others = runs.c.run_id != run_id
    last_merge = sa.select(sa.func.max(runs.c.started_at)).where(
        others, runs.c.status == "succeeded", runs.c.mode == "merge"
    )
    settled = sa.select(runs.c.run_id).where(
        others, sa.or_(runs.c.status == "succeeded", runs.c.started_at < last_merge.scalar_subquery())
    )
    earlier = sa.and_(
        pairs.c.linked_run.in_(settled),
        pairs.c.first_merge_done.is_(True),
        sa.or_(pairs.c.first_merged_run.is_(None), pairs.c.first_merged_run.in_(settled)),
    )
    changed = (
        sa.select(outbox.c.pair_id)
        .join(pairs, pairs.c.pair_id == outbox.c.pair_id)
        .where(outbox.c.status.in_(OWED), outbox.c.action == "update", earlier)
        .distinct()
        .subquery()
    )
    count = int(connection.execute(sa.select(sa.func.count()).select_from(changed)).scalar() or 0)
    linked = int(connection.execute(sa.select(sa.func.count()).select_from(pairs).where(earlier)).scalar() or 0)
    return count, linked
