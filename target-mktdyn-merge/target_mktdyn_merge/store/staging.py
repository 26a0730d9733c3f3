"""Staging: every source record's newest version, idempotently (docs/architecture.md §4).

The newest version of a record wins by (source timestamp, arrival order), a replayed record changes nothing,
and a field the tap did not send stays unknown. Only a real change of content moves a record's
``changed_seq``, which is how the merge finds what to look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.normalize import normalize_email
from target_mktdyn_merge.core.records import StagedRecord, StageResult
from target_mktdyn_merge.core.values import dumps, now_iso, utc_iso, utc_text
from target_mktdyn_merge.core.vocabulary import STREAMS, StreamSpec
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK
from target_mktdyn_merge.store.runs import RunLog

#: Longest key the store keeps (its key columns are VARCHAR(64)). Marketo ids are integers and Dataverse ids
#: GUIDs (36 characters): a longer "key" is malformed input, refused on every backend (PostgreSQL would fail
#: the whole batch with a store error where SQLite silently accepted it).
KEY_LENGTH: int = getattr(tables.staged.c.record_id.type, "length", None) or 64


#: How far ahead of the staging clock a source timestamp may be before it is not believed (see ``Store.stage``).
FUTURE_TOLERANCE = timedelta(days=1)


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


def _reuse(known: Mapping[str, StagedRecord] | None, row: sa.Row[Any]) -> StagedRecord | None:
    """A record already decoded from this very row, if any.

    Planning reads a staged row several times (its dirty batch, then by email for its own and its neighbours'
    matching): decoding its JSON each time was the largest single cost of planning. ``changed_seq`` is drawn
    from the store's counter whenever a row's content or deletion changes, so an equal ``changed_seq`` (and
    ``merged_seq``) means the same content: reusing the decoded record answers exactly as decoding again.
    """
    if known is None:
        return None
    record = known.get(row.record_id)
    if record is None or record.changed_seq != row.changed_seq or record.merged_seq != row.merged_seq:
        return None
    return record


class Staging(RunLog):
    """Staged source records: idempotent staging, the newest version wins, what changed since the last merge."""

    # -- staging --------------------------------------------------------------------------------
    def stage(self, stream: str, records: Iterable[Mapping[str, Any]], run_id: str) -> StageResult:
        """Stage a batch of Singer records of ``stream`` in one transaction.

        A source timestamp more than :data:`FUTURE_TOLERANCE` ahead of the staging clock (a client with a wrong
        clock, a hostile value) is not believed for ordering: the record is staged as of the staging time, its
        key reported in ``StageResult.future`` (the sink warns, naming it), its fields unchanged. Believed, it
        would make every later, real version of the record look "older than staged" until that date.
        """
        spec = STREAMS[stream]
        newest, versions, future = _newest_versions(spec, records)
        inserted = updated = unchanged = older = 0
        table = tables.staged
        with self._counter_lock, self.transaction() as connection:
            arrival = self._next(connection, "arrival", max(1, len(newest)))
            changed_base = self._next(connection, "changed", max(1, len(newest)))
            ids = list(newest)
            existing = _staged_rows(connection, stream, ids)
            inserts: list[dict[str, Any]] = []
            for offset, record_id in enumerate(ids):
                source_ts, content, deleted_at = newest[record_id]
                row = existing.get(record_id)
                if row is not None and row.source_ts > source_ts:
                    older += 1
                    continue
                if deleted_at is not None and row is not None:
                    content = row.fields  # a delete keeps what we knew, for the log
                if row is not None and row.fields == content and row.deleted_at == deleted_at:
                    unchanged += 1
                    continue
                email = normalize_email(json.loads(content).get(spec.email))
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
            _mark_seen(connection, stream, versions)
        # Writes confirmed before this run's extraction started are in what it read: no longer in doubt.
        self.absorb_confirmed_writes(stream, newest, self.run_read_from(run_id))
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
            for start in range(0, len(dropped), CHUNK):
                chunk = dropped[start : start + CHUNK]
                connection.execute(sa.delete(table).where(table.c.stream == stream, table.c.property.in_(chunk)))
        self._selection = None

    def selection(self, stream: str) -> frozenset[str] | None:
        """The properties the stream's current catalog selects (None: no extraction recorded one yet)."""
        return self._selected(stream)

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
            for start in range(0, len(ids), CHUNK):
                result = connection.execute(
                    sa.update(table)
                    .where(
                        table.c.source == stream,
                        table.c.deleted_at.is_(None),
                        table.c.record_id.in_(ids[start : start + CHUNK]),
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

    def staged_records(
        self, stream: str, record_ids: Iterable[str], known: Mapping[str, StagedRecord] | None = None
    ) -> dict[str, StagedRecord]:
        """The staged versions of many records of ``stream`` (live or deleted), by id; absent ids are missing.

        ``known``: records already decoded, reused when the row is still that version (see ``_reuse``).
        """
        table = tables.staged
        selected = self._selected(stream)
        wanted = sorted({str(i) for i in record_ids})
        found: dict[str, StagedRecord] = {}
        with self.transaction() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                for row in connection.execute(
                    sa.select(table).where(table.c.source == stream, table.c.record_id.in_(chunk))
                ):
                    found[row.record_id] = _reuse(known, row) or _row_to_staged(row, selected)
        return found

    def staged_by_email(
        self, stream: str, emails: Iterable[str], known: Mapping[str, StagedRecord] | None = None
    ) -> dict[str, list[StagedRecord]]:
        """Live (not deleted) staged records of ``stream`` by normalized email (``known``: as ``staged_records``)."""
        table = tables.staged
        selected = self._selected(stream)
        found: dict[str, list[StagedRecord]] = {}
        wanted = sorted({e for e in emails if e})
        with self.transaction() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                for row in connection.execute(
                    sa.select(table).where(
                        table.c.source == stream, table.c.email_norm.in_(chunk), table.c.deleted_at.is_(None)
                    )
                ):
                    record = _reuse(known, row) or _row_to_staged(row, selected)
                    found.setdefault(row.email_norm, []).append(record)
        return found

    def dirty_records(
        self, stream: str, batch_size: int = 1000, with_text_in: str | None = None
    ) -> Iterator[list[StagedRecord]]:
        """Records whose content changed since the merge last looked at them, in batches (bounded memory).

        ``with_text_in``: only records whose staged fields hold a text value in that field. The database
        filters on the stored JSON (as ``dumps`` writes it), so a pass that wants a few rows of an initial sync's
        hundreds of thousands decodes only those (the planner's qualified contacts).
        """
        table = tables.staged
        selected = self._selected(stream)
        last_id = ""
        condition = sa.and_(table.c.source == stream, table.c.changed_seq > table.c.merged_seq)
        if with_text_in is not None:
            condition = sa.and_(condition, table.c.fields.contains(dumps({with_text_in: ""})[1:-2], autoescape=True))
        while True:
            with self.transaction() as connection:
                rows = connection.execute(
                    sa.select(table)
                    .where(condition, table.c.record_id > last_id)
                    .order_by(table.c.record_id)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            yield [_row_to_staged(row, selected) for row in rows]
            last_id = rows[-1].record_id

    def staged_counts(self) -> dict[str, dict[str, int]]:
        """Live and deleted staged records per stream.

        Every run reports them, so they are counted from indexes: all records from the keys, the deleted ones
        from ``ix_staged_deleted``. Grouping on ``deleted_at`` read every row of the table.
        """
        table = tables.staged
        count = sa.func.count().label("n")
        with self.transaction() as connection:
            totals = connection.execute(sa.select(table.c.source, count).group_by(table.c.source)).all()
            deleted: dict[str, int] = {
                str(source): int(n)
                for source, n in connection.execute(
                    sa.select(table.c.source, count).where(table.c.deleted_at.is_not(None)).group_by(table.c.source)
                )
            }
        return {
            str(source): {"live": int(total) - deleted.get(str(source), 0), "deleted": deleted.get(str(source), 0)}
            for source, total in totals
        }


def mark_merged(connection: sa.Connection, merged: Mapping[str, Iterable[StagedRecord]]) -> None:
    """Record that the merge has seen these versions (by source): a record is dirty again only when it changes.

    The update matches the version planned (``changed_seq``), so a record restaged while a batch was planned
    stays dirty for the next run. One executemany, not a statement per record.
    """
    staged = tables.staged
    marks = [
        {"b_source": source, "b_record_id": r.record_id, "b_changed_seq": r.changed_seq}
        for source, records in merged.items()
        for r in records
    ]
    if marks:
        connection.execute(
            sa.update(staged)
            .where(
                staged.c.source == sa.bindparam("b_source"),
                staged.c.record_id == sa.bindparam("b_record_id"),
                staged.c.changed_seq == sa.bindparam("b_changed_seq"),
            )
            .values(merged_seq=sa.bindparam("b_changed_seq")),
            marks,
        )


#: A record's newest version in a batch: (source timestamp, its fields as JSON text, deleted_at).
_Version = tuple[str, str, str | None]


def _newest_versions(
    spec: StreamSpec, records: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, _Version], dict[str, int], set[str]]:
    """The newest version of each record of a batch, each record's full-extraction version, and future keys."""
    newest: dict[str, _Version] = {}
    versions: dict[str, int] = {}  # records of a full extraction carry its version
    staged_at = datetime.now(UTC)
    now_text, horizon = utc_iso(staged_at), utc_iso(staged_at + FUTURE_TOLERANCE)
    future: set[str] = set()
    for record in records:
        record_id, source_ts, content, deleted_at = _split_record(spec, record)
        if source_ts > horizon:
            future.add(record_id)
            source_ts = now_text
        previous = newest.get(record_id)
        if previous is None or source_ts >= previous[0]:
            newest[record_id] = (source_ts, content, deleted_at)
        version = record.get("_sdc_table_version")
        if isinstance(version, int) and not isinstance(version, bool):
            versions[record_id] = max(version, versions.get(record_id, version))
    return newest, versions, future


def _staged_rows(connection: sa.Connection, stream: str, ids: list[str]) -> dict[str, sa.Row[Any]]:
    """The staged rows of these records, by id."""
    table = tables.staged
    existing: dict[str, sa.Row[Any]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for found in connection.execute(sa.select(table).where(table.c.source == stream, table.c.record_id.in_(chunk))):
            existing[found.record_id] = found
    return existing


def _mark_seen(connection: sa.Connection, stream: str, versions: Mapping[str, int]) -> None:
    """Note the full extraction that saw each record, changed or not (key reconciliation reads it)."""
    table = tables.staged
    by_version: dict[int, list[str]] = {}
    for record_id, version in versions.items():
        by_version.setdefault(version, []).append(record_id)
    for version, record_ids in by_version.items():
        for start in range(0, len(record_ids), CHUNK):
            connection.execute(
                sa.update(table)
                .where(table.c.source == stream, table.c.record_id.in_(record_ids[start : start + CHUNK]))
                .values(seen_version=version)
            )


def _split_record(spec: StreamSpec, record: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    """Key, source timestamp, known fields (as the JSON text staged) and deletion time of one Singer record.

    The text is what the store compares with the staged row (an echo of our own write is unchanged) and what
    it stores; ``dumps`` is deterministic, so encoding once is enough.
    """
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
    return record_id, source_ts, dumps(fields), deleted_at


def _timestamp(spec: StreamSpec, record_id: str, field: str, value: Any) -> str:
    """A source timestamp as sortable UTC text ('' when absent); anything else is refused.

    The SDK parses a value its SCHEMA declares ``date-time``; a tap that declares a plain string could send any
    text, which would order records wrongly (newest wins by this text) and overflow the store's column.
    """
    if value is None or value == "":
        return ""
    text = utc_text(value)
    if text is None:
        raise ValueError(
            f"stream {spec.name!r}, record {spec.key}={record_id}, field {field!r}: {str(value).strip()[:40]!r} is "
            "not a date-time (ISO 8601)"
        )
    return text
