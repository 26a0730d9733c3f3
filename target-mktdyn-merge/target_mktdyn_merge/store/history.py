"""What the operator's views read beyond one run: run history with counts, records by email, retention.

The report (``mktdyn report --format html|json``), ``mktdyn activity --email`` and the retention of the
activity log (docs/architecture.md §5) read the store here, so their SQL stays in the store layer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.normalize import normalize_email
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, PERSONS_STREAM
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK
from target_mktdyn_merge.store.database import Store


@dataclass
class RunSummary:
    """One run as the history shows it: what it was, how it ended, its activities per action."""

    run_id: str
    mode: str
    status: str
    started_at: str
    finished_at: str | None
    error: str | None
    counts: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "counts": dict(self.counts),
            "summary": self.summary,
        }


def run_history(store: Store, limit: int, modes: Iterable[str] = ("merge", "dry_run")) -> list[RunSummary]:
    """The newest ``limit`` runs of ``modes``, oldest first, each with its activity counts per action.

    Counts come from the activity log, so a run's bars show what it decided (``unchanged`` rows pruned by
    retention are gone from them; the run's stored summary keeps its totals).
    """
    runs, log = tables.runs, tables.activity_log
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(runs)
            .where(runs.c.mode.in_(list(modes)))
            .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            .limit(limit)
        ).all()
        ids = [row.run_id for row in rows]
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for start in range(0, len(ids), CHUNK):
            grouped = connection.execute(
                sa.select(log.c.run_id, log.c.action, sa.func.count())
                .where(log.c.run_id.in_(ids[start : start + CHUNK]))
                .group_by(log.c.run_id, log.c.action)
            )
            for run_id, action, count in grouped:
                counts[run_id][action] = int(count)
    return [
        RunSummary(
            run_id=row.run_id,
            mode=row.mode,
            status=row.status,
            started_at=row.started_at,
            finished_at=row.finished_at,
            error=row.error,
            counts=counts.get(row.run_id, {}),
            summary=json.loads(row.summary or "{}"),
        )
        for row in reversed(rows)
    ]


def run_summary(store: Store, run_id: str) -> RunSummary | None:
    """One run (any mode) with its counts; None when the store has no such run."""
    runs, log = tables.runs, tables.activity_log
    with store.transaction() as connection:
        row = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            return None
        grouped = connection.execute(
            sa.select(log.c.action, sa.func.count()).where(log.c.run_id == run_id).group_by(log.c.action)
        )
        counts = {action: int(count) for action, count in grouped}
    return RunSummary(
        row.run_id, row.mode, row.status, row.started_at, row.finished_at, row.error, counts,
        json.loads(row.summary or "{}"),
    )  # fmt: skip


def records_with_email(store: Store, email: str) -> tuple[list[str], list[str]]:
    """The staged persons and leads/contacts whose normalized email is ``email``: (person ids, Dynamics ids)."""
    key = normalize_email(email)
    if key is None:
        return [], []
    staged = tables.staged
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(staged.c.source, staged.c.record_id).where(staged.c.email_norm == key)
        ).all()
    persons = sorted(str(r.record_id) for r in rows if r.source == PERSONS_STREAM)
    dynamics = sorted(str(r.record_id) for r in rows if r.source in DYNAMICS_STREAM.values())
    return persons, dynamics


def emails_of(store: Store, person_ids: Iterable[str], dynamics_ids: Iterable[str]) -> dict[str, str]:
    """Normalized email of each staged record named (persons and leads/contacts), keyed by record id."""
    staged = tables.staged
    found: dict[str, str] = {}
    wanted = [(PERSONS_STREAM,), tuple(DYNAMICS_STREAM.values())]
    for sources, ids in zip(wanted, (sorted(set(person_ids)), sorted(set(dynamics_ids))), strict=True):
        with store.transaction() as connection:
            for start in range(0, len(ids), CHUNK):
                rows = connection.execute(
                    sa.select(staged.c.record_id, staged.c.email_norm).where(
                        staged.c.source.in_(sources), staged.c.record_id.in_(ids[start : start + CHUNK])
                    )
                )
                found.update({str(r.record_id): r.email_norm for r in rows if r.email_norm})
    return found


def prune_unchanged(connection: sa.Connection, before: str) -> int:
    """Delete ``unchanged`` activities older than ``before`` (UTC ISO); how many went.

    An ``unchanged`` row records that nothing happened; kept forever they outnumber everything else (1,074 of
    2,396 rows after six runs on 1,000 persons). The run's summary keeps its counts.
    """
    log = tables.activity_log
    result = connection.execute(sa.delete(log).where(log.c.action == "unchanged", log.c.at < before))
    return int(result.rowcount or 0)


def pair_counts(store: Store) -> dict[str, int]:
    """Linked pairs per Dynamics entity."""
    pairs = tables.pairs
    with store.transaction() as connection:
        rows = connection.execute(sa.select(pairs.c.entity, sa.func.count()).group_by(pairs.c.entity)).all()
    return {str(entity): int(count) for entity, count in sorted(rows)}


def changed_counts(store: Store) -> dict[str, int]:
    """Staged records per stream whose content changed since the merge last looked at them (what it will plan)."""
    staged = tables.staged
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(staged.c.source, sa.func.count())
            .where(staged.c.changed_seq > staged.c.merged_seq)
            .group_by(staged.c.source)
        ).all()
    return {str(source): int(count) for source, count in rows}
