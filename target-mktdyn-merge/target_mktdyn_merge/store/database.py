"""The durable store: connection, migrations, runs and staging (SQLAlchemy Core; SQLite or PostgreSQL).

Staging is idempotent (docs/architecture.md §4): the newest version of a record wins by (source timestamp, arrival
order), a replayed record changes nothing, and a field the tap did not send stays unknown. Only a real
change of content moves a record's ``changed_seq``, which is how the merge finds what to look at.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from mktdyn_common.redact import protect_secrets

from target_mktdyn_merge.core.normalize import normalize_email
from target_mktdyn_merge.core.records import StagedRecord, StageResult
from target_mktdyn_merge.core.values import dumps, now_iso, timestamp_text, utc_iso
from target_mktdyn_merge.core.vocabulary import STREAMS, StreamSpec
from target_mktdyn_merge.store import schema as tables

_CHUNK = 500
#: Longest key the store keeps (its key columns are VARCHAR(64)). Marketo ids are integers and Dataverse ids
#: GUIDs (36 characters): a longer "key" is malformed input, refused on every backend (PostgreSQL would fail
#: the whole batch with a store error where SQLite silently accepted it).
KEY_LENGTH: int = getattr(tables.staged.c.record_id.type, "length", None) or 64
#: How far ahead of the staging clock a source timestamp may be before it is not believed (see ``Store.stage``).
FUTURE_TOLERANCE = timedelta(days=1)
#: PostgreSQL advisory lock key that serializes schema migrations (the write lock has its own, in lock.py).
MIGRATION_LOCK_KEY = 0x6D6B7464796E0001


class StoreError(MktdynError):
    """The store cannot be opened, migrated or written; the run must stop."""


def new_run_id() -> str:
    """A run id that sorts in start order (microseconds) and is unique (a random suffix)."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:6]}"


def default_store_url() -> str:
    """``sqlite:///<MELTANO_PROJECT_ROOT or cwd>/.mktdyn/store.db`` (docs/architecture.md §9.5)."""
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT") or os.getcwd())
    return f"sqlite:///{root / '.mktdyn' / 'store.db'}"


def _row_to_staged(row: sa.Row[Any], selected: frozenset[str] | None = None) -> StagedRecord:
    fields = json.loads(row.fields)
    if selected is not None and not fields.keys() <= selected:  # a deselected field is unknown at once
        fields = {k: v for k, v in fields.items() if k in selected}
    return StagedRecord(
        source=row.source,
        record_id=row.record_id,
        email_norm=row.email_norm,
        source_ts=row.source_ts,
        deleted_at=row.deleted_at,
        fields=fields,
        changed_seq=row.changed_seq,
        merged_seq=row.merged_seq,
    )


class Store:
    """Owns the engine; every public method is one transaction (safe from the SDK's drain threads)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_store_url()
        try:
            sa_url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:  # its message quotes the URL, password and all: not repeated
            raise StoreError(
                "setting 'store_url': not a SQLAlchemy URL (dialect+driver://user:password@host/database)"
            ) from exc
        # The URL's password is a secret: masked in every log line and message, whoever prints the URL.
        protect_secrets([sa_url.password if isinstance(sa_url.password, str) else None])
        self.is_sqlite = sa_url.get_backend_name() == "sqlite"
        if self.is_sqlite and sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 60} if self.is_sqlite else {}
        try:
            self.engine = sa.create_engine(self.url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite)
        except (sa.exc.ArgumentError, ImportError) as exc:  # an unknown dialect or a missing driver
            raise StoreError(f"setting 'store_url': {self.safe_url}: {exc}") from exc
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._counter_lock = threading.Lock()
        self._selection: dict[str, frozenset[str]] | None = None  # stream → selected properties
        self._run_starts: dict[str, str] = {}
        self._batch = threading.local()  # the connection of this thread's open ``batched`` block, if any

    # -- lifecycle ------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to the latest version; refuse a store written by a newer release."""
        try:
            with self.engine.begin() as connection:
                self._serialize_migrations(connection)
                tables.schema_version.create(connection, checkfirst=True)
                current = connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar() or 0
                if current > tables.LATEST_VERSION:
                    raise StoreError(
                        f"the store at {self.safe_url} has schema version {current}, newer than this "
                        f"release understands ({tables.LATEST_VERSION}); upgrade target-mktdyn-merge"
                    )
                for version in range(current + 1, tables.LATEST_VERSION + 1):
                    tables.MIGRATIONS[version - 1](connection)
                    connection.execute(sa.insert(tables.schema_version).values(version=version, applied_at=now_iso()))
                return tables.LATEST_VERSION
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.__class__.__name__}: {exc}") from exc

    def _serialize_migrations(self, connection: sa.Connection) -> None:
        """Make two processes opening a fresh store at once migrate one after the other.

        Without this both see no table and both create it, and the slower one fails. PostgreSQL takes a
        transaction-scoped advisory lock (released at commit, or by the server if the process dies);
        SQLite takes its database write lock up front (``BEGIN IMMEDIATE``), waiting ``busy_timeout``.
        """
        if self.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))

    @property
    def safe_url(self) -> str:
        """The store URL with any password hidden (for messages and logs)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction; store errors surface as StoreError. Inside :meth:`batched` (same thread): that one."""
        joined = getattr(self._batch, "connection", None)
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store error ({self.safe_url}): {exc.__class__.__name__}: {exc}") from exc

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Make every :meth:`transaction` of this thread inside the block one transaction.

        The write-back records the outcome of each record of an API call (its outbox entry, pair, baseline,
        activity); one commit per record was a third of an initial sync. A call's outcomes are committed
        together instead. Nothing is lost by it: if the block fails or the process dies, every entry of the
        call is still ``sent`` (in doubt), which the next run resolves as it resolves any lost answer.
        """
        if getattr(self._batch, "connection", None) is not None:
            yield
            return
        with self.transaction() as connection:
            self._batch.connection = connection
            try:
                yield
            finally:
                self._batch.connection = None

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- counters -------------------------------------------------------------------------------
    def _next(self, connection: sa.Connection, name: str, count: int = 1) -> int:
        """Reserve ``count`` values of a counter; return the first.

        The increment is one atomic ``UPDATE value = value + count`` so that two processes staging at once
        never reserve the same numbers: the row stays locked until the transaction ends (PostgreSQL row
        lock; SQLite database write lock), and reading it back inside the transaction sees our own value.
        A read-then-write would let both read the same value. The row is created on first use; if another
        process creates it first, its insert wins and ours becomes an update.
        """
        table = tables.counters
        bump = sa.update(table).where(table.c.name == name).values(value=table.c.value + count)
        if connection.execute(bump).rowcount == 0:
            try:
                with connection.begin_nested():
                    connection.execute(sa.insert(table).values(name=name, value=count))
            except sa.exc.IntegrityError:
                connection.execute(bump)
        value = connection.execute(sa.select(table.c.value).where(table.c.name == name)).scalar_one()
        return int(value) - count + 1

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, mode: str, started_at: str | None = None) -> str:
        """Record a new run and return its id (time-ordered, unique).

        ``started_at`` is when the invocation started (default: now). The target passes its process start: its
        tap started then too, so nothing it stages can have been read before it (see ``confirmed_writes``).
        """
        run_id = new_run_id()
        with self.transaction() as connection:
            connection.execute(
                sa.insert(tables.runs).values(
                    run_id=run_id, mode=mode, status="running", started_at=started_at or now_iso()
                )
            )
        return run_id

    def run_started_at(self, run_id: str) -> str:
        """When a run started ('' for an unknown run)."""
        started = self._run_starts.get(run_id)
        if started is None:
            with self.transaction() as connection:
                value = connection.execute(
                    sa.select(tables.runs.c.started_at).where(tables.runs.c.run_id == run_id)
                ).scalar()
            started = self._run_starts[run_id] = str(value or "")
        return started

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
            for start in range(0, len(ids), _CHUNK):
                condition = sa.and_(table.c.source == stream, table.c.record_id.in_(ids[start : start + _CHUNK]))
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

    # -- staging --------------------------------------------------------------------------------
    def stage(self, stream: str, records: Iterable[Mapping[str, Any]], run_id: str) -> StageResult:
        """Stage a batch of Singer records of ``stream`` in one transaction.

        A source timestamp more than :data:`FUTURE_TOLERANCE` ahead of the staging clock (a client with a wrong
        clock, a hostile value) is not believed for ordering: the record is staged as of the staging time, its
        key reported in ``StageResult.future`` (the sink warns, naming it), its fields unchanged. Believed, it
        would make every later, real version of the record look "older than staged" until that date.
        """
        spec = STREAMS[stream]
        newest: dict[str, tuple[str, dict[str, Any], str | None]] = {}
        versions: dict[str, int] = {}  # records of a full extraction carry its version
        staged_at = datetime.now(UTC)
        now_text, horizon = utc_iso(staged_at), utc_iso(staged_at + FUTURE_TOLERANCE)
        future: set[str] = set()
        for record in records:
            record_id, source_ts, fields, deleted_at = _split_record(spec, record)
            if source_ts > horizon:
                future.add(record_id)
                source_ts = now_text
            previous = newest.get(record_id)
            if previous is None or source_ts >= previous[0]:
                newest[record_id] = (source_ts, fields, deleted_at)
            version = record.get("_sdc_table_version")
            if isinstance(version, int) and not isinstance(version, bool):
                versions[record_id] = max(version, versions.get(record_id, version))
        inserted = updated = unchanged = older = 0
        table = tables.staged
        with self._counter_lock, self.transaction() as connection:
            arrival = self._next(connection, "arrival", max(1, len(newest)))
            changed_base = self._next(connection, "changed", max(1, len(newest)))
            ids = list(newest)
            existing: dict[str, sa.Row[Any]] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                for found in connection.execute(
                    sa.select(table).where(table.c.source == stream, table.c.record_id.in_(chunk))
                ):
                    existing[found.record_id] = found
            inserts: list[dict[str, Any]] = []
            for offset, record_id in enumerate(ids):
                source_ts, fields, deleted_at = newest[record_id]
                row = existing.get(record_id)
                if row is not None and row.source_ts > source_ts:
                    older += 1
                    continue
                if deleted_at is not None and row is not None:
                    fields = json.loads(row.fields)  # a delete keeps what we knew, for the log
                content = dumps(fields)
                email = normalize_email(fields.get(spec.email))
                if row is not None and row.fields == content and row.deleted_at == deleted_at:
                    unchanged += 1
                    continue
                values = {
                    "seen_version": versions.get(record_id, row.seen_version if row is not None else None),
                    "email_norm": email,
                    "source_ts": source_ts,
                    "arrival": arrival + offset,
                    "deleted_at": deleted_at,
                    "fields": content,
                    "staged_run": run_id,
                    "changed_seq": changed_base + offset,
                }
                if row is None:
                    inserts.append({"source": stream, "record_id": record_id, "merged_seq": 0, **values})
                    inserted += 1
                else:
                    connection.execute(
                        sa.update(table)
                        .where(table.c.source == stream, table.c.record_id == record_id)
                        .values(**values)
                    )
                    updated += 1
            if inserts:
                connection.execute(sa.insert(table), inserts)
            by_version: dict[int, list[str]] = {}
            for record_id, version in versions.items():
                by_version.setdefault(version, []).append(record_id)
            for version, record_ids in by_version.items():  # seen by a full extraction, changed or not
                for start in range(0, len(record_ids), _CHUNK):
                    connection.execute(
                        sa.update(table)
                        .where(table.c.source == stream, table.c.record_id.in_(record_ids[start : start + _CHUNK]))
                        .values(seen_version=version)
                    )
        # Writes confirmed before this run's extraction started are in what it read: no longer in doubt.
        self.absorb_confirmed_writes(stream, newest, self.run_started_at(run_id))
        return StageResult(inserted, updated, unchanged, older, tuple(sorted(future)))

    def record_selection(self, stream: str, properties: Iterable[str]) -> None:
        """Record the properties a stream's SCHEMA carries (what its catalog selects now).

        Every extraction sends the SCHEMA, even with no record, so a field deselected since is unknown from this
        run on, also in records staged before. A field selected again counts again at once, and every record of
        the stream is merged again in this run: a value staged before the field was deselected is still the
        record's value unless the record changed meanwhile, and then it was re-extracted without the field,
        which stays unknown until the record's next extraction.
        """
        wanted = {p for p in properties if not p.startswith("_sdc_")}
        table = tables.stream_properties
        with self.transaction() as connection:
            current = set(connection.execute(sa.select(table.c.property).where(table.c.stream == stream)).scalars())
            added, dropped = sorted(wanted - current), sorted(current - wanted)
            if added:
                connection.execute(sa.insert(table), [{"stream": stream, "property": p} for p in added])
            if added and current:  # selected again (or newly): every record of the stream is merged again
                staged = tables.staged
                connection.execute(sa.update(staged).where(staged.c.source == stream).values(merged_seq=0))
            for start in range(0, len(dropped), _CHUNK):
                chunk = dropped[start : start + _CHUNK]
                connection.execute(sa.delete(table).where(table.c.stream == stream, table.c.property.in_(chunk)))
        self._selection = None

    def _selected(self, stream: str) -> frozenset[str] | None:
        """The stream's selected properties (None: never recorded, every staged field counts)."""
        if self._selection is None:
            table = tables.stream_properties
            selection: dict[str, set[str]] = {}
            with self.transaction() as connection:
                for row in connection.execute(sa.select(table)):
                    selection.setdefault(row.stream, set()).add(row.property)
            self._selection = {name: frozenset(props) for name, props in selection.items()}
        return self._selection.get(stream)

    def reconcile_candidates(self, stream: str, version: int) -> tuple[list[str], int]:
        """After a full extraction of ``version``: the live records it did not return, and how many are live.

        Nothing is marked here: the candidates are bounded and confirmed by a direct read first
        (:mod:`target_mktdyn_merge.sync.reconcile`), then :meth:`mark_deleted` marks the ones really gone.
        """
        table = tables.staged
        live = sa.and_(table.c.source == stream, table.c.deleted_at.is_(None))
        with self.transaction() as connection:
            missing = connection.execute(
                sa.select(table.c.record_id)
                .where(live, sa.or_(table.c.seen_version.is_(None), table.c.seen_version < version))
                .order_by(table.c.record_id)
            ).scalars()
            candidates = [str(record_id) for record_id in missing]
            total = int(connection.execute(sa.select(sa.func.count()).select_from(table).where(live)).scalar() or 0)
        return candidates, total

    def mark_deleted(self, stream: str, record_ids: Iterable[str], run_id: str) -> int:
        """Mark live staged records deleted (key reconciliation, docs/architecture.md §4); return how many were.

        The delete keeps the record's source timestamp, so if the record is returned again later (the
        extraction was not really full) the newer arrival brings it back.
        """
        table = tables.staged
        ids = sorted({str(i) for i in record_ids})
        if not ids:
            return 0
        marked = 0
        with self._counter_lock, self.transaction() as connection:
            changed = self._next(connection, "changed")
            for start in range(0, len(ids), _CHUNK):
                result = connection.execute(
                    sa.update(table)
                    .where(
                        table.c.source == stream,
                        table.c.deleted_at.is_(None),
                        table.c.record_id.in_(ids[start : start + _CHUNK]),
                    )
                    .values(deleted_at=now_iso(), changed_seq=changed, staged_run=run_id)
                )
                marked += int(result.rowcount or 0)
        return marked

    # -- what the store has seen of each stream (docs/architecture.md §10: a store that does not match the bookmarks) --
    def mark_full_extraction(self, stream: str) -> None:
        """Remember that a full extraction of ``stream`` was staged here (a ``counters`` row: no migration)."""
        name = f"full:{stream}"
        table = tables.counters
        with self.transaction() as connection:
            if connection.execute(sa.select(table.c.value).where(table.c.name == name)).first() is None:
                try:
                    with connection.begin_nested():
                        connection.execute(sa.insert(table).values(name=name, value=1))
                except sa.exc.IntegrityError:  # another run marked it first
                    pass

    def knows_stream(self, stream: str) -> bool:
        """Whether this store staged a full extraction of ``stream``, or merged successfully before it kept count.

        The second clause keeps a store made by an earlier release (it never recorded full extractions) usable;
        an empty or replaced store has neither.
        """
        with self.transaction() as connection:
            if connection.execute(
                sa.select(tables.counters.c.value).where(tables.counters.c.name == f"full:{stream}")
            ).first():
                return True
            runs = tables.runs
            merged = connection.execute(
                sa.select(runs.c.run_id).where(runs.c.mode == "merge", runs.c.status == "succeeded").limit(1)
            ).first()
        return merged is not None

    def staged_record(self, stream: str, record_id: str) -> StagedRecord | None:
        """The staged version of one record."""
        table = tables.staged
        selected = self._selected(stream)
        with self.transaction() as connection:
            row = connection.execute(
                sa.select(table).where(table.c.source == stream, table.c.record_id == str(record_id))
            ).first()
        return None if row is None else _row_to_staged(row, selected)

    def staged_records(self, stream: str, record_ids: Iterable[str]) -> dict[str, StagedRecord]:
        """The staged versions of many records of ``stream`` (live or deleted), by id; absent ids are missing."""
        table = tables.staged
        selected = self._selected(stream)
        wanted = sorted({str(i) for i in record_ids})
        found: dict[str, StagedRecord] = {}
        with self.transaction() as connection:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for row in connection.execute(
                    sa.select(table).where(table.c.source == stream, table.c.record_id.in_(chunk))
                ):
                    found[row.record_id] = _row_to_staged(row, selected)
        return found

    def staged_by_email(self, stream: str, emails: Iterable[str]) -> dict[str, list[StagedRecord]]:
        """Live (not deleted) staged records of ``stream`` by normalized email."""
        table = tables.staged
        selected = self._selected(stream)
        found: dict[str, list[StagedRecord]] = {}
        wanted = sorted({e for e in emails if e})
        with self.transaction() as connection:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for row in connection.execute(
                    sa.select(table).where(
                        table.c.source == stream, table.c.email_norm.in_(chunk), table.c.deleted_at.is_(None)
                    )
                ):
                    found.setdefault(row.email_norm, []).append(_row_to_staged(row, selected))
        return found

    def dirty_records(self, stream: str, batch_size: int = 1000) -> Iterator[list[StagedRecord]]:
        """Records whose content changed since the merge last looked at them, in batches (bounded memory)."""
        table = tables.staged
        selected = self._selected(stream)
        last_id = ""
        while True:
            with self.transaction() as connection:
                rows = connection.execute(
                    sa.select(table)
                    .where(
                        table.c.source == stream, table.c.changed_seq > table.c.merged_seq, table.c.record_id > last_id
                    )
                    .order_by(table.c.record_id)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            yield [_row_to_staged(row, selected) for row in rows]
            last_id = rows[-1].record_id

    def staged_counts(self) -> dict[str, dict[str, int]]:
        """Live and deleted staged records per stream."""
        table = tables.staged
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(table.c.source, table.c.deleted_at.is_(None).label("live"), sa.func.count()).group_by(
                    table.c.source, table.c.deleted_at.is_(None)
                )
            ).all()
        counts: dict[str, dict[str, int]] = {}
        for source, live, count in rows:
            counts.setdefault(source, {"live": 0, "deleted": 0})["live" if live else "deleted"] += count
        return counts


def record_confirmed_write(connection: sa.Connection, stream: str, record_id: str) -> None:
    """Note (in the caller's transaction) that the system confirmed a write to this record just now."""
    table = tables.confirmed_writes
    now = now_iso()
    updated = connection.execute(
        sa.update(table).where(table.c.source == stream, table.c.record_id == record_id).values(confirmed_at=now)
    )
    if not updated.rowcount:
        connection.execute(sa.insert(table).values(source=stream, record_id=record_id, confirmed_at=now))


def _split_record(spec: StreamSpec, record: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], str | None]:
    """Key, source timestamp, known fields and deletion time of one Singer record."""
    if record.get(spec.key) in (None, ""):
        known = {k: v for k, v in record.items() if not k.startswith("_sdc_")}
        raise ValueError(
            f"stream {spec.name!r}, field {spec.key!r}: a record has no key (every record needs its key): "
            f"{dumps(known)[:300]}"
        )
    record_id = str(record[spec.key])
    if len(record_id) > KEY_LENGTH:
        raise ValueError(
            f"stream {spec.name!r}, field {spec.key!r}: a key of {len(record_id)} characters "
            f"({record_id[:40]!r}...); keys of either system have at most {KEY_LENGTH}"
        )
    deleted_at = _timestamp(spec, record_id, "_sdc_deleted_at", record.get("_sdc_deleted_at")) or None
    source_ts = deleted_at or _timestamp(spec, record_id, spec.replication_key, record.get(spec.replication_key))
    fields = {k: v for k, v in record.items() if not k.startswith("_sdc_")}
    # Round-trip through JSON so datetimes, dates and decimals are stored as their text forms.
    return record_id, source_ts, json.loads(dumps(fields)), deleted_at


def _timestamp(spec: StreamSpec, record_id: str, field: str, value: Any) -> str:
    """A source timestamp as sortable UTC text ('' when absent); anything else is refused.

    The SDK parses a value its SCHEMA declares ``date-time``; a tap that declares a plain string could send any
    text, which would order records wrongly (newest wins by this text) and overflow the store's column.
    """
    text = timestamp_text(value)
    if text:
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"stream {spec.name!r}, record {spec.key}={record_id}, field {field!r}: {text[:40]!r} is not a "
                "date-time (ISO 8601)"
            ) from None
    return text


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    deadline = time.monotonic() + 60
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Turning a fresh file to WAL needs it alone for an instant; when another run opens the same fresh
            # store at that instant SQLite answers "locked" at once, without waiting busy_timeout: try again.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_existing(url: str | None = None) -> Store:
    """Open a store that exists and is at this release's schema, without creating or migrating anything.

    For the ``mktdyn`` commands (and ``check``): a mistyped URL must not leave an empty store behind, and an
    operator's command must not upgrade a production store under an older scheduled job. The store is
    probed read-only first (SQLite: ``mode=ro``, so not even the WAL switch touches a file that is not a
    store); only a store at exactly :data:`~store_schema.LATEST_VERSION` is opened. Every refusal is one line
    naming the URL (password hidden) and what to do: an older schema names ``mktdyn db upgrade``.
    """
    url = url or default_store_url()
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"setting 'store_url': {exc}") from exc
    safe = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or parsed.database == ":memory:" or not path.is_file():
            raise StoreError(
                f"no store at {safe}: the file does not exist (check --store-url / MKTDYN_STORE_URL; "
                "the first sync creates the store)"
            )
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        probe = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=sa.NullPool)
    else:
        try:
            probe = sa.create_engine(url, poolclass=sa.NullPool)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"setting 'store_url': {safe}: {exc}") from exc
    try:
        with probe.connect() as connection:
            if not sa.inspect(connection).has_table(tables.schema_version.name):
                raise StoreError(
                    f"{safe} holds no mktdyn store (no schema_version table; check --store-url / MKTDYN_STORE_URL)"
                )
            version = connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar() or 0
    except sa.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
        raise StoreError(f"cannot open the store at {safe}: {reason}") from exc
    finally:
        probe.dispose()
    if version < tables.LATEST_VERSION:
        raise StoreError(
            f"the store at {safe} has schema version {version}, older than this release's "
            f"{tables.LATEST_VERSION}: upgrade it with `mktdyn db upgrade` (same --store-url; stop scheduled "
            "runs first)"
        )
    if version > tables.LATEST_VERSION:
        raise StoreError(
            f"the store at {safe} has schema version {version}, newer than this release understands "
            f"({tables.LATEST_VERSION}); use the mktdyn release that wrote it, or a newer one"
        )
    return Store(url)
