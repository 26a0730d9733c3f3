"""The run log: each run's start, end, outcome and what it confirmed writing (docs/architecture.md §4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.values import dumps, now_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK, StoreConnection


def new_run_id() -> str:
    """A run id that sorts in start order (microseconds) and is unique (a random suffix)."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:6]}"


class RunLog(StoreConnection):
    """The runs of the store: started, finished, what they did (``runs``, ``confirmed_writes``)."""

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, mode: str, started_at: str | None = None, read_from: str | None = None) -> str:
        """Record a new run and return its id (time-ordered, unique).

        ``started_at`` is when the invocation started (default: now); runs are ordered and timed by it.
        ``read_from`` (default: ``started_at``) is when its tap read, at the latest: nothing the run stages was
        read before it (see ``confirmed_writes``). The target passes its process start, as its tap started then
        too under Meltano, or the first record's ``time_extracted`` if that is earlier.
        """
        run_id = new_run_id()
        started = started_at or now_iso()
        with self.transaction() as connection:
            connection.execute(
                sa.insert(tables.runs).values(
                    run_id=run_id, mode=mode, status="running", started_at=started, read_from=read_from or started
                )
            )
        return run_id

    def run_started_at(self, run_id: str) -> str:
        """When a run started ('' for an unknown run)."""
        return self._run_times(run_id)[0]

    def run_read_from(self, run_id: str) -> str:
        """When a run's tap read, at the latest ('' for an unknown run; a run from before migration 15: its start)."""
        return self._run_times(run_id)[1]

    def _run_times(self, run_id: str) -> tuple[str, str]:
        times = self._run_time_cache.get(run_id)
        if times is None:
            runs = tables.runs
            with self.transaction() as connection:
                row = connection.execute(
                    sa.select(runs.c.started_at, runs.c.read_from).where(runs.c.run_id == run_id)
                ).first()
            started = str(row.started_at or "") if row is not None else ""
            read_from = str(row.read_from or started) if row is not None else ""
            times = self._run_time_cache[run_id] = (started, read_from)
        return times

    # -- confirmed writes (docs/architecture.md §10: no run writes from data older than what the store confirmed) ------
    def stale_records(self, stream: str) -> list[str]:
        """Records of ``stream`` written (and confirmed) since the extraction that staged them started.

        Their staged version may predate the write: a run that overlapped the writing one extracted them
        before it wrote. Compared as they are, their old values would look like edits and be written back
        over the newer ones, so the merge re-reads them first (:mod:`target_mktdyn_merge.sync.freshness`).
        """
        table = tables.confirmed_writes
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(table.c.record_id).where(table.c.source == stream).order_by(table.c.record_id)
            ).scalars()
            return [str(record_id) for record_id in rows]

    def absorb_confirmed_writes(self, stream: str, record_ids: Iterable[str], seen_since: str | None) -> None:
        """Forget confirmed writes to these records made before ``seen_since`` (None: all of them).

        A read that started after a write includes it. The same second is not "after" (times are whole seconds).
        """
        table = tables.confirmed_writes
        ids = sorted({str(i) for i in record_ids})
        if not ids or seen_since == "":
            return
        with self.transaction() as connection:
            for start in range(0, len(ids), CHUNK):
                condition = sa.and_(table.c.source == stream, table.c.record_id.in_(ids[start : start + CHUNK]))
                if seen_since is not None:
                    condition = sa.and_(condition, table.c.confirmed_at < seen_since)
                connection.execute(sa.delete(table).where(condition))

    def finish_run(
        self, run_id: str, status: str, summary: Mapping[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Close a run with its outcome."""
        with self.transaction() as connection:
            connection.execute(
                sa.update(tables.runs)
                .where(tables.runs.c.run_id == run_id)
                .values(status=status, finished_at=now_iso(), summary=dumps(summary or {}), error=error)
            )

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(tables.runs)
                .order_by(tables.runs.c.started_at.desc(), tables.runs.c.run_id.desc())
                .limit(limit)
            ).all()
        return [dict(row._mapping) for row in rows]

    def last_run(self, mode: str | None = None) -> str | None:
        """The id of the newest run (of a mode)."""
        query = (
            sa.select(tables.runs.c.run_id)
            .order_by(tables.runs.c.started_at.desc(), tables.runs.c.run_id.desc())
            .limit(1)
        )
        if mode is not None:
            query = query.where(tables.runs.c.mode == mode)
        with self.transaction() as connection:
            value = connection.execute(query).scalar()
        return None if value is None else str(value)


def record_confirmed_writes(connection: sa.Connection, records: Iterable[tuple[str, str]]) -> None:
    """Note (in the caller's transaction) that the systems confirmed writes to these (stream, id) just now."""
    table = tables.confirmed_writes
    keys = sorted(set(records))
    if not keys:
        return
    now = now_iso()
    for stream in {s for s, _ in keys}:
        ids = [i for s, i in keys if s == stream]
        for start in range(0, len(ids), CHUNK):
            connection.execute(
                sa.delete(table).where(table.c.source == stream, table.c.record_id.in_(ids[start : start + CHUNK]))
            )
    connection.execute(sa.insert(table), [{"source": s, "record_id": i, "confirmed_at": now} for s, i in keys])


def first_merge_started(connection: sa.Connection, run_id: str) -> str | None:
    """When the first real merge run other than ``run_id`` that succeeded started (None: none has)."""
    runs = tables.runs
    started = connection.execute(
        sa.select(sa.func.min(runs.c.started_at)).where(
            runs.c.mode == "merge", runs.c.status == "succeeded", runs.c.run_id != run_id
        )
    ).scalar()
    return str(started) if started is not None else None


def merge_run_number(connection: sa.Connection) -> int:
    """How many merge runs the store has seen (the ping-pong guard's clock)."""
    value = connection.execute(
        sa.select(sa.func.count()).select_from(tables.runs).where(tables.runs.c.mode.in_(["merge", "dry_run"]))
    ).scalar()
    return int(value or 0)
