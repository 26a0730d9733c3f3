"""The activity log (docs/architecture.md §5): one record per decision, kept in the store and exportable as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.values import dumps, now_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK
from target_mktdyn_merge.store.database import Store


def record_activities(
    store: Store,
    run_id: str,
    activities: Iterable[Activity],
    connection: sa.Connection | None = None,
    *,
    dry_run: bool = False,
) -> int:
    """Append activities to the log (inside ``connection``'s transaction when given).

    ``dry_run`` marks them as what a dry run would have done: a column of the log, not only a key of
    ``details``, so nothing that reads the log (posting to Marketo, ``mktdyn activity``) can take them for
    outcomes that happened.
    """
    at = now_iso()
    rows = [
        {
            "run_id": run_id,
            "at": at,
            "person_id": a.person_id,
            "entity": a.entity,
            "dynamics_id": a.dynamics_id,
            "direction": a.direction,
            "action": a.action,
            "fields": dumps([c.to_dict() for c in a.fields]),
            "winner": a.winner,
            "rule": a.rule,
            "error_code": a.error_code,
            "error_message": a.error_message,
            "details": dumps(a.details),
            "dry_run": dry_run,
        }
        for a in activities
    ]
    if not rows:
        return 0
    if connection is not None:
        connection.execute(sa.insert(tables.activity_log), rows)
    else:
        with store.transaction() as own:
            own.execute(sa.insert(tables.activity_log), rows)
    return len(rows)


def iter_activities(
    store: Store, run_id: str | None = None, actions: Iterable[str] | None = None, batch_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """Activities in log order (optionally of one run / some actions), streamed in batches."""
    table = tables.activity_log
    last = 0
    wanted = list(actions) if actions is not None else None
    while True:
        query = sa.select(table).where(table.c.activity_id > last).order_by(table.c.activity_id).limit(batch_size)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        if wanted is not None:
            query = query.where(table.c.action.in_(wanted))
        with store.transaction() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return
        for row in rows:
            item = dict(row._mapping)
            item["fields"] = json.loads(item["fields"] or "[]")
            item["details"] = json.loads(item["details"] or "{}")
            yield item
        last = rows[-1].activity_id


def action_counts(store: Store, run_id: str) -> dict[tuple[str, str], int]:
    """Counts of (action, direction) in one run."""
    table = tables.activity_log
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(table.c.action, table.c.direction, sa.func.count())
            .where(table.c.run_id == run_id)
            .group_by(table.c.action, table.c.direction)
        ).all()
    counts: Counter[tuple[str, str]] = Counter()
    for action, direction, count in rows:
        counts[(action, direction or "-")] += count
    return dict(counts)


def creates_found_existing(connection: sa.Connection, person_ids: Iterable[str]) -> set[str]:
    """Those of these persons for whom a real run planned a lead and found one already there (the create path).

    That is "Sync Person to Microsoft" on an existing lead even during the initial sync: the lead appeared
    between extraction and write-back, the create was not sent (``skipped``), and the next run links it.
    One query per ``CHUNK`` persons (a planning batch asks for all of its persons at once).
    """
    log = tables.activity_log
    ids = sorted(set(person_ids))
    found: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        rows = connection.execute(
            sa.select(log.c.person_id, log.c.details).where(
                log.c.person_id.in_(ids[start : start + CHUNK]),
                log.c.action == "skipped",
                log.c.direction == "to_dynamics",
                log.c.dry_run.is_(False),
            )
        )
        found.update(
            str(person) for person, details in rows if json.loads(str(details) or "{}").get("planned") == "create"
        )
    return found
