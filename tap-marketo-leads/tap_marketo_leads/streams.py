"""The ``marketo_leads`` stream: persons changed since the bookmark, then persons deleted since it.

Changes come from the Bulk Lead Extract with the ``updatedAt`` filter (which sees every field, unlike
the visible ``updatedAt``), in windows of at most ``window_days``; where the subscription lacks that
filter (error 1035) they come from the activity change feed. The bookmark is the end of the last
window exported, never a record's visible ``updatedAt`` (it does not move for custom-field edits).
The state also holds an export in progress, so an interrupted run resumes it instead of paying for
a second one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mktdyn_common.errors import ApiError
from mktdyn_common.state import EXTRACTION, FULL, INCREMENTAL
from singer_sdk import Stream
from singer_sdk.helpers import types
from singer_sdk.singerlib.catalog import Metadata

from tap_marketo_leads.client import MarketoClient, chunked, iso_z
from tap_marketo_leads.connection import MAX_BATCH
from tap_marketo_leads.envelope import MarketoApiError, Remedy
from tap_marketo_leads.export import (
    MAX_QUEUED,
    MB,
    ExportCheckpoint,
    ExportFailedError,
    LeadExporter,
    allowance_day,
    allowance_note,
    data_begins,
    exported_bytes_on,
    jobs_to_start,
    plan_windows,
    projected_bytes,
)
from tap_marketo_leads.schema import (
    DELETED_AT,
    KEY,
    REPLICATION_KEY,
    LeadSchema,
)
from tap_marketo_leads.values import ValueTyper, to_datetime, with_null_text

if TYPE_CHECKING:
    from singer_sdk import Tap

#: Re-read this much before the bookmark: clocks differ and Marketo stamps changes to the second.
OVERLAP = timedelta(minutes=1)
#: Marketo may prune delete activities after about 14 days; a first run looks no further back.
DELETE_HORIZON = timedelta(days=15)
UNSUPPORTED_FILTER = "1035"
#: Marketo's New Lead activity type (kept forever, unlike other activities): dates each person's creation.
NEW_LEAD = 12
#: Export windows in flight by default: two processing in Marketo and one queued behind them.
DEFAULT_PIPELINE_DEPTH = 3
#: Marketo's default daily bulk export allowance.
DEFAULT_ALLOWANCE_MB = 500
#: Where a first extraction starts when ``start_date`` is not set: no Marketo subscription holds persons
#: created before Marketo's launch year; the first run skips on to the month of the oldest person anyway.
DEFAULT_START = datetime(2006, 1, 1, tzinfo=UTC)
# Fields that are never "changed" in the activity feed's sense.
_NOT_CHANGE_FIELDS = frozenset({KEY, REPLICATION_KEY, "createdAt", DELETED_AT})


@dataclass(slots=True)
class MarketoPropertyMetadata(Metadata):
    """Property metadata with Marketo's facts, shown in the catalog (``marketo-read-only`` …)."""

    marketo_read_only: bool | None = None
    marketo_data_type: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(to_datetime(value).replace("Z", "+00:00"))


class MarketoLeadsStream(Stream):
    """Marketo persons, incremental by change time, with deletes as records (docs/architecture.md §9.3)."""

    name = "marketo_leads"
    primary_keys = (KEY,)
    replication_key = REPLICATION_KEY
    is_sorted = False

    def __init__(self, tap: Tap, schema: dict[str, Any], lead_schema: LeadSchema | None, client: MarketoClient) -> None:
        super().__init__(tap, schema=schema, name=self.name)
        self._lead_schema = lead_schema
        self._client = client

    # -- catalog ------------------------------------------------------------------------------
    @property
    def metadata(self) -> Any:
        """Standard metadata, plus automatic inclusion of docs/architecture.md §9.3's fields and read-only flags."""
        if self._metadata is not None:
            return self._metadata
        metadata = super().metadata
        properties = self.schema["properties"]
        automatic = [
            name for name in (KEY, REPLICATION_KEY, "email", "syncToDynamics", DELETED_AT) if name in properties
        ]
        for name in automatic:
            metadata[("properties", name)].inclusion = Metadata.InclusionType.AUTOMATIC
        if self._lead_schema is not None and not self._tap_input_catalog:
            for name, info in self._lead_schema.fields.items():
                breadcrumb = ("properties", name)
                current = metadata[breadcrumb]
                metadata[breadcrumb] = MarketoPropertyMetadata(
                    inclusion=current.inclusion,
                    selected=current.selected,
                    selected_by_default=current.selected_by_default,
                    marketo_read_only=True if info.read_only else None,
                    marketo_data_type=info.data_type,
                )
        return metadata

    def selected_fields(self) -> list[str]:
        """Fields to ask Marketo for: the selected ones, always with the automatic ones (schema order)."""
        mask = self.mask
        properties = self.schema["properties"]
        automatic = {
            breadcrumb[1]
            for breadcrumb, entry in self.metadata.items()
            if len(breadcrumb) == 2 and entry.inclusion == Metadata.InclusionType.AUTOMATIC
        }
        return [name for name in properties if name != DELETED_AT and (name in automatic or mask[("properties", name)])]

    # -- state --------------------------------------------------------------------------------
    def _increment_stream_state(self, latest_record: types.Record, *, context: types.Context | None = None) -> None:
        """Records do not move the bookmark: a window's end does, once all its records are out.

        The SDK would keep the highest visible ``updatedAt``, which lags custom-field edits and
        would make the next run miss them.
        """

    def _checkpoint(self) -> None:
        """Emit the current state now (records before this point are already on stdout)."""
        self.state_manager.is_flushed = False
        self._write_state_message()

    # -- records ------------------------------------------------------------------------------
    def get_records(self, context: types.Context | None) -> Iterable[dict[str, Any]]:
        """Changed persons, then deleted persons, since the bookmark."""
        state = self.stream_state
        had_bookmark = bool(state.get("replication_key_value"))
        state[EXTRACTION] = INCREMENTAL if had_bookmark else FULL  # the target checks its store against it
        start = self.get_starting_timestamp(context) or DEFAULT_START
        window_start = start - OVERLAP if had_bookmark else start
        fields = self.selected_fields()
        typer = ValueTyper({name: self.schema["properties"][name] for name in fields})
        method = str(self.config.get("extract_method") or "auto")
        now = _now()
        try:
            use_feed = method == "activities" or (method == "auto" and state.get("updated_at_filter") is False)
            if not use_feed:
                try:
                    yield from self._bulk_records(state, fields, typer, window_start, now)
                except MarketoApiError as exc:
                    if exc.code != UNSUPPORTED_FILTER or method != "auto":
                        raise
                    self.logger.warning(
                        "This subscription has no updatedAt export filter (Marketo %s: %s); using the activity "
                        "change feed instead (extract_method auto)",
                        exc.code,
                        exc.api_message,
                    )
                    state["updated_at_filter"] = False
                    use_feed = True
            if use_feed:
                yield from self._feed_records(state, fields, typer, window_start, now)
            delete_since = window_start if had_bookmark else max(window_start, now - DELETE_HORIZON)
            yield from self._delete_records(fields, delete_since)
        finally:
            calls = self._client.calls
            self.logger.info(
                "Marketo calls this run: read=%d write=%d metadata=%d auth=%d; retries: %s",
                calls["read"],
                calls["write"],
                calls["metadata"],
                calls["auth"],
                dict(self._client.retries) or "none",
            )

    def _bulk_records(
        self, state: dict[str, Any], fields: list[str], typer: ValueTyper, window_start: datetime, now: datetime
    ) -> Iterator[dict[str, Any]]:
        """Export windows, pipelined: the next jobs wait in Marketo's queue while a file is read.

        Records come out strictly in window order and the bookmark moves to a window's end only once
        all its records are out. The state lists the jobs in flight (``exports``, in window order) and
        the end of the run's plan (``exports_until``): a run killed anywhere resumes those jobs, creates
        the windows still missing up to that end, and stops there; the next run carries on from it.
        """
        exporter = LeadExporter(self._client, float(self.config.get("poll_interval_seconds") or 60))
        window = timedelta(days=min(31, max(1, int(self.config.get("window_days") or 30))))
        depth = max(1, min(MAX_QUEUED, int(self.config.get("export_pipeline_depth") or DEFAULT_PIPELINE_DEPTH)))
        state.pop("activity_token", None)
        pending = self._pending_exports(state, fields, exporter)
        plan_end = state.get("exports_until")
        # Finish what an interrupted run planned and stop at its end: resuming never pays for a second
        # export of a window (nor a second share of the daily export allowance).
        if pending:
            window_start = _parse_time(pending[0].start)
        elif not state.get("replication_key_value"):
            window_start = self._first_data(window_start)
        if isinstance(plan_end, str):
            now = min(now, _parse_time(plan_end))
        elif pending:
            now = min(now, _parse_time(pending[-1].end))
        resume_from = _parse_time(pending[-1].end) if pending else window_start
        todo = plan_windows(resume_from, now, window)
        total = len(pending) + len(todo)
        state["exports_until"] = iso_z(now)
        self._log_plan(total, window_start, now, depth, bool(pending))
        in_flight: list[ExportCheckpoint] = list(pending)
        unqueued: set[str] = set()
        done = 0
        done_bytes = 0
        warned = False
        try:
            while True:
                self._start_jobs(exporter, fields, todo, in_flight, unqueued, depth)
                if not in_flight:
                    break
                head = in_flight[0]
                began = time.monotonic()
                job, head = self._await(exporter, head, in_flight)
                unqueued.discard(head.export_id)
                # The head has left Marketo's queue: the next windows queue behind it while its file is read.
                self._start_jobs(exporter, fields, todo, in_flight, unqueued, depth)
                count = 0
                for record in self._read_window(exporter, head, job, typer, in_flight):
                    count += 1
                    yield record
                in_flight.pop(0)
                done += 1
                size = job.get("fileSize")
                done_bytes += size if isinstance(size, int) else 0
                state["exports"] = [checkpoint.to_state() for checkpoint in in_flight]
                state["replication_key"] = REPLICATION_KEY
                state["replication_key_value"] = head.end
                state["updated_at_filter"] = True
                self._checkpoint()
                self.logger.info(
                    "Window %d/%d (%s to %s) emitted: %d persons, %.1f MB, %.1f s; %d export(s) in flight; %s",
                    done,
                    total,
                    head.start,
                    head.end,
                    count,
                    (size if isinstance(size, int) else 0) / MB,
                    time.monotonic() - began,
                    len(in_flight),
                    allowance_note(projected_bytes(done_bytes, done, total), self._used_today, self._allowance),
                )
                projected = projected_bytes(done_bytes, done, total)
                if not warned and projected is not None and projected > self._allowance - self._used_today:
                    warned = True
                    self.logger.warning(
                        "This extraction will likely exceed today's export allowance (%s): Marketo will refuse "
                        "new export jobs (1029) and the run will stop; the next day's run carries on from the "
                        "last window emitted",
                        allowance_note(projected, self._used_today, self._allowance),
                    )
        except BaseException as exc:
            self._cancel_queued(exporter, in_flight[1:], checkpoint=isinstance(exc, Exception))
            raise
        state.pop("exports", None)
        state.pop("export", None)
        state.pop("exports_until", None)
        state["replication_key"] = REPLICATION_KEY
        state["replication_key_value"] = iso_z(now)
        state["updated_at_filter"] = True
        self._checkpoint()

    # -- bulk helpers -------------------------------------------------------------------------
    _used_today = 0
    _allowance = DEFAULT_ALLOWANCE_MB * MB

    def _pending_exports(
        self, state: dict[str, Any], fields: list[str], exporter: LeadExporter
    ) -> list[ExportCheckpoint]:
        """The jobs an interrupted run left in flight (``export`` is the single-job form of older states)."""
        raw = state.get("exports")
        items = raw if isinstance(raw, list) else [state.get("export")]
        pending = [c for c in (ExportCheckpoint.from_state(item) for item in items) if c is not None]
        state.pop("export", None)
        if any(checkpoint.fields != fields for checkpoint in pending):
            self.logger.info("Exports in the state asked for other fields; starting fresh ones")
            for checkpoint in pending:
                exporter.cancel_quietly(checkpoint.export_id)
            return []
        for checkpoint in pending:
            self.logger.info(
                "Resuming export %s (%s to %s) from the state", checkpoint.export_id, checkpoint.start, checkpoint.end
            )
        return pending

    def _first_data(self, start: datetime) -> datetime:
        """The first extraction's start: the month of the oldest person's creation (its New Lead activity).

        Two or three calls instead of an export job for every empty window since ``start_date``. The search
        begins at Marketo's launch, not at ``start_date``: a person created before ``start_date`` and changed
        after it must be exported even when nobody was created for months after ``start_date``.
        """
        try:
            oldest = self._client.oldest_activity(NEW_LEAD, min(start, DEFAULT_START))
        except MarketoApiError as exc:
            if exc.remedy is not Remedy.FATAL:
                raise
            self.logger.warning("Could not read the oldest New Lead activity (%s); exporting from %s", exc, start)
            return start
        created = _parse_time(str(oldest["activityDate"])) if oldest and oldest.get("activityDate") else None
        begins = data_begins(start, created)
        if created is None:
            self.logger.warning("No New Lead activity found since %s; exporting every window from it", iso_z(start))
        else:
            self.logger.info(
                "Oldest person created %s (New Lead activity of person %s): exports start %s, not %s",
                iso_z(created),
                oldest.get("leadId") if oldest else None,
                iso_z(begins),
                iso_z(start),
            )
        return begins

    def _log_plan(self, total: int, start: datetime, end: datetime, depth: int, resuming: bool) -> None:
        """What this run will cost: windows, and the export allowance already spent today.

        The allowance spent is read from this API user's job list (one call), only when the run has more
        than one window to export: an incremental run's single window costs nothing worth a call.
        """
        self._allowance = int(float(self.config.get("export_daily_allowance_mb") or DEFAULT_ALLOWANCE_MB) * MB)
        if total <= 1:
            self.logger.info("Export plan: %d window(s) from %s to %s", total, iso_z(start), iso_z(end))
            return
        try:
            today = allowance_day(_now())
            self._used_today = exported_bytes_on(self._client.lead_exports(["Completed"]), today)
        except ApiError as exc:
            self.logger.info("Could not list today's exports (%s); assuming none", exc)
            self._used_today = 0
        self.logger.info(
            "%s: %d export window(s) from %s to %s, up to %d in flight; %s",
            "Resuming the export plan" if resuming else "Export plan",
            total,
            iso_z(start),
            iso_z(end),
            depth,
            allowance_note(None, self._used_today, self._allowance),
        )

    def _start_jobs(
        self,
        exporter: LeadExporter,
        fields: list[str],
        todo: list[tuple[datetime, datetime]],
        in_flight: list[ExportCheckpoint],
        unqueued: set[str],
        depth: int,
    ) -> None:
        """Enqueue jobs left waiting by a full queue, then create jobs until ``depth`` windows are in flight."""
        for checkpoint in in_flight[1:]:
            if checkpoint.export_id in unqueued and exporter.enqueue(checkpoint.export_id):
                unqueued.discard(checkpoint.export_id)
        for _ in range(jobs_to_start(len(in_flight), len(todo), depth)):
            if unqueued:
                return  # the queue is full: more jobs would only wait as Created
            start, end = todo.pop(0)
            export_id = self._client.create_lead_export(fields, start, end)
            checkpoint = ExportCheckpoint(export_id, iso_z(start), iso_z(end), fields)
            in_flight.append(checkpoint)
            self.stream_state["exports"] = [item.to_state() for item in in_flight]
            self._checkpoint()
            if not exporter.enqueue(export_id):
                unqueued.add(export_id)
            self.logger.info(
                "Export %s queued for persons changed %s to %s", export_id, checkpoint.start, checkpoint.end
            )

    def _cancel_queued(self, exporter: LeadExporter, queued: list[ExportCheckpoint], *, checkpoint: bool) -> None:
        """On an error, free Marketo's queue of jobs whose windows this run will not read."""
        if not queued:
            return
        for item in queued:
            exporter.cancel_quietly(item.export_id)
        ids = {item.export_id for item in queued}
        exports = self.stream_state.get("exports")
        if isinstance(exports, list):
            self.stream_state["exports"] = [e for e in exports if not (isinstance(e, dict) and e.get("id") in ids)]
        self.logger.info("Cancelled %d queued export(s) after the error", len(queued))
        if checkpoint:
            self._checkpoint()

    def _await(
        self, exporter: LeadExporter, checkpoint: ExportCheckpoint, in_flight: list[ExportCheckpoint]
    ) -> tuple[dict[str, Any], ExportCheckpoint]:
        """The head window's completed job (exported again when Marketo lost or failed it)."""
        try:
            return exporter.wait(checkpoint.export_id), checkpoint
        except ExportFailedError as exc:
            self.logger.warning("Export %s cannot be used (%s); exporting the window again", checkpoint.export_id, exc)
        except MarketoApiError as exc:
            if exc.remedy is not Remedy.FATAL:
                raise
            self.logger.warning(
                "Export %s is unknown to Marketo (%s); exporting the window again", checkpoint.export_id, exc
            )
        return self._restart(exporter, checkpoint, in_flight)

    def _read_window(
        self,
        exporter: LeadExporter,
        checkpoint: ExportCheckpoint,
        job: dict[str, Any],
        typer: ValueTyper,
        in_flight: list[ExportCheckpoint],
    ) -> Iterator[dict[str, Any]]:
        count = 0
        try:
            for record in self._null_text(exporter.records(checkpoint.export_id, job, typer), typer):
                count += 1
                yield self._complete(record, checkpoint.fields)
        except ApiError as exc:
            # A completed file can be gone (kept 7 days; a resumed job may be older): export again.
            if exc.code != "file-not-found" or count:
                raise
            self.logger.warning("Export %s file is gone (%s); exporting the window again", checkpoint.export_id, exc)
            job, checkpoint = self._restart(exporter, checkpoint, in_flight)
            for record in self._null_text(exporter.records(checkpoint.export_id, job, typer), typer):
                yield self._complete(record, checkpoint.fields)

    def _null_text(self, records: Iterator[dict[str, Any]], typer: ValueTyper) -> Iterator[dict[str, Any]]:
        """Export records with the word "null" told apart from empty, unless ``null_text_check`` is off."""
        if self.config.get("null_text_check", True) is False:
            return records
        return with_null_text(records, typer, self._reread)

    def _reread(self, ids: list[Any], fields: list[str]) -> Iterator[dict[str, Any]]:
        """Persons by id through ``leads.json`` (values.with_null_text: the word "null" versus empty)."""
        return self._client.get_leads("id", ids, fields)

    def _restart(
        self, exporter: LeadExporter, checkpoint: ExportCheckpoint, in_flight: list[ExportCheckpoint]
    ) -> tuple[dict[str, Any], ExportCheckpoint]:
        export_id = exporter.start(checkpoint.fields, _parse_time(checkpoint.start), _parse_time(checkpoint.end))
        fresh = replace(checkpoint, export_id=export_id)
        in_flight[0] = fresh
        self.stream_state["exports"] = [item.to_state() for item in in_flight]
        self._checkpoint()
        return exporter.wait(export_id), fresh

    def _feed_records(
        self, state: dict[str, Any], fields: list[str], typer: ValueTyper, window_start: datetime, now: datetime
    ) -> Iterator[dict[str, Any]]:
        change_fields = [name for name in fields if name not in _NOT_CHANGE_FIELDS]
        token = state.get("activity_token")
        if not isinstance(token, str) or not token:
            token = self._client.get_paging_token(window_start)
        seen: set[int] = set()
        pending: list[int] = []
        last_token = token
        for page in self._first_page_checked(token, change_fields, window_start):
            last_token = page.next_token
            for item in page.items:
                lead_id = item.get("leadId")
                if isinstance(lead_id, int) and lead_id not in seen:
                    seen.add(lead_id)
                    pending.append(lead_id)
            while len(pending) >= MAX_BATCH:
                yield from self._leads_by_id(pending[:MAX_BATCH], fields, typer)
                del pending[:MAX_BATCH]
        for batch in chunked(pending, MAX_BATCH):
            yield from self._leads_by_id(list(batch), fields, typer)
        self.logger.info("Activity feed: %d changed persons", len(seen))
        for key in ("export", "exports", "exports_until"):
            state.pop(key, None)
        state["activity_token"] = last_token
        state["replication_key"] = REPLICATION_KEY
        state["replication_key_value"] = iso_z(now)
        self._checkpoint()

    def _first_page_checked(self, token: str, fields: list[str], since: datetime) -> Iterator[Any]:
        """The feed's pages; a stored token Marketo no longer accepts is replaced by one from the bookmark."""
        pages = self._client.lead_changes(token, fields)
        try:
            first = next(pages)
        except StopIteration:
            return
        except MarketoApiError as exc:
            if exc.remedy is not Remedy.FATAL:
                raise
            self.logger.warning("Stored activity paging token refused (%s); starting from the bookmark", exc)
            pages = self._client.lead_changes(self._client.get_paging_token(since), fields)
            first = next(pages)
        yield first
        yield from pages

    def _leads_by_id(self, ids: list[int], fields: list[str], typer: ValueTyper) -> Iterator[dict[str, Any]]:
        for lead in self._client.get_leads("id", ids, fields):
            yield self._complete({name: typer.from_json(name, lead.get(name)) for name in fields}, fields)

    def _delete_records(self, fields: list[str], since: datetime) -> Iterator[dict[str, Any]]:
        token = self._client.get_paging_token(since)
        deleted = 0
        for page in self._client.deleted_leads(token):
            for item in page.items:
                lead_id = item.get("leadId")
                when = item.get("activityDate")
                if lead_id is None or not when:
                    continue
                moment = to_datetime(when)
                record: dict[str, Any] = dict.fromkeys(fields)
                record[KEY] = int(lead_id)
                record[REPLICATION_KEY] = moment
                record[DELETED_AT] = moment
                deleted += 1
                yield record
        self.logger.info("Deleted persons since %s: %d", iso_z(since), deleted)

    @staticmethod
    def _complete(record: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
        """Every requested field present (null when Marketo sent nothing), and not a delete."""
        result = dict(record) if len(record) >= len(fields) else {**dict.fromkeys(fields), **record}
        result[DELETED_AT] = None
        return result
