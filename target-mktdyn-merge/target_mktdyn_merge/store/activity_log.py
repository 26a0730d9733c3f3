"""The activity log (docs/architecture.md §5): one record per decision, kept in the store and exportable as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class ActivityFilter:
    """Which activities an operator asked for (``mktdyn activity --person/--email/--action/--since/--run``).

    Empty fields select everything; ``person_ids`` and ``dynamics_ids`` together select the activities of
    any of those records (a person's email finds the person and its lead/contact, so both sides of its history).
    """

    run_id: str | None = None
    actions: tuple[str, ...] = ()
    person_ids: tuple[str, ...] = ()
    dynamics_ids: tuple[str, ...] = ()
    since: str | None = None  # UTC ISO text; activities at or after it
    leave_out: tuple[str, ...] = ()  # actions not wanted (the report's timeline leaves out ``unchanged``)

    @property
    def by_record(self) -> bool:
        """Whether the filter names records."""
        return bool(self.person_ids or self.dynamics_ids)


def _filtered(query: sa.Select[Any], wanted: ActivityFilter) -> sa.Select[Any]:
    table = tables.activity_log
    if wanted.run_id is not None:
        query = query.where(table.c.run_id == wanted.run_id)
    if wanted.actions:
        query = query.where(table.c.action.in_(wanted.actions))
    if wanted.leave_out:
        query = query.where(table.c.action.not_in(wanted.leave_out))
    if wanted.since is not None:
        query = query.where(table.c.at >= wanted.since)
    if wanted.by_record:
        query = query.where(
            sa.or_(table.c.person_id.in_(wanted.person_ids), table.c.dynamics_id.in_(wanted.dynamics_ids))
        )
    return query


def iter_activities(
    store: Store,
    run_id: str | None = None,
    actions: Iterable[str] | None = None,
    batch_size: int = 2000,
    *,
    where: ActivityFilter | None = None,
) -> Iterator[dict[str, Any]]:
    """Activities in log order (optionally of one run / some actions / a filter), streamed in batches."""
    table = tables.activity_log
    last = 0
    wanted = where or ActivityFilter()
    if run_id is not None or actions is not None:
        wanted = replace(
            wanted,
            run_id=run_id if run_id is not None else wanted.run_id,
            actions=tuple(actions) if actions is not None else wanted.actions,
        )
        if actions is not None and not wanted.actions:
            return  # asked for none of the actions
    while True:
        query = sa.select(table).where(table.c.activity_id > last).order_by(table.c.activity_id).limit(batch_size)
        with store.transaction() as connection:
            rows = connection.execute(_filtered(query, wanted)).all()
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
    """Those of these persons for whom a real run planned a lead and found one that appeared since (the create path).

    That is "Sync Person to Microsoft" on an existing lead even during the initial sync: the lead appeared
    between extraction and write-back, the create was not sent (``skipped``), and the next run links it. A lead
    that existed before the extraction started and was only not extracted yet (the extraction was cut short) does
    not count: an undisturbed run would have matched it by the usual rules (``appeared_since_extraction`` false;
    entries from before that flag count, as the create path overwrites nothing).
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
        for person, details in rows:
            skip = json.loads(str(details) or "{}")
            if skip.get("planned") == "create" and skip.get("appeared_since_extraction", True):
                found.add(str(person))
    return found
