"""The ``marketo_leads`` stream: persons changed since the bookmark, then persons deleted since it.

Changes come from the Bulk Lead Extract with the ``updatedAt`` filter (which sees every field, unlike
the visible ``updatedAt``), in windows of at most ``window_days``; where the subscription lacks that
filter (error 1035) they come from the activity change feed. The bookmark is the end of the last
window exported, never a record's visible ``updatedAt`` (it does not move for custom-field edits).
The state also holds an export in progress, so an interrupted run resumes it instead of paying for
a second one.
"""

from __future__ import annotations

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
from tap_marketo_leads.export import ExportCheckpoint, ExportFailedError, LeadExporter
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
    """Marketo persons, incremental by change time, with deletes as records (DESIGN §9.3)."""

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
        """Standard metadata, plus automatic inclusion of DESIGN §9.3's fields and Marketo's read-only flags."""
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
        start = self.get_starting_timestamp(context) or datetime(2000, 1, 1, tzinfo=UTC)
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
        exporter = LeadExporter(self._client, float(self.config.get("poll_interval_seconds") or 60))
        window = timedelta(days=min(31, max(1, int(self.config.get("window_days") or 30))))
        state.pop("activity_token", None)
        pending = ExportCheckpoint.from_state(state.get("export"))
        if pending is not None and pending.fields != fields:
            self.logger.info("Export %s in the state asked for other fields; starting a fresh one", pending.export_id)
            exporter.cancel_quietly(pending.export_id)
            pending = None
        if pending is not None:
            # Finish the interrupted export and stop at its end: the next run carries on from there,
            # so resuming never costs a second export (nor a second share of the daily export quota).
            window_start = min(window_start, _parse_time(pending.start))
            now = min(now, _parse_time(pending.end))
        while window_start < now:
            if pending is not None:
                checkpoint = pending
                pending = None
                self.logger.info(
                    "Resuming export %s (%s to %s) from the state",
                    checkpoint.export_id,
                    checkpoint.start,
                    checkpoint.end,
                )
            else:
                window_end = min(window_start + window, now)
                export_id = exporter.start(fields, window_start, window_end)
                checkpoint = ExportCheckpoint(export_id, iso_z(window_start), iso_z(window_end), fields)
                state["export"] = checkpoint.to_state()
                self._checkpoint()
                self.logger.info(
                    "Export %s started for persons changed %s to %s", export_id, checkpoint.start, checkpoint.end
                )
            yield from self._export_window(exporter, checkpoint, typer)
            state.pop("export", None)
            state["replication_key"] = REPLICATION_KEY
            state["replication_key_value"] = checkpoint.end
            state["updated_at_filter"] = True
            self._checkpoint()
            window_start = _parse_time(checkpoint.end)

    def _export_window(
        self, exporter: LeadExporter, checkpoint: ExportCheckpoint, typer: ValueTyper
    ) -> Iterator[dict[str, Any]]:
        try:
            job = exporter.wait(checkpoint.export_id)
        except ExportFailedError as exc:
            self.logger.warning("Export %s cannot be used (%s); exporting the window again", checkpoint.export_id, exc)
            job, checkpoint = self._restart(exporter, checkpoint)
        except MarketoApiError as exc:
            if exc.remedy is not Remedy.FATAL:
                raise
            self.logger.warning(
                "Export %s is unknown to Marketo (%s); exporting the window again", checkpoint.export_id, exc
            )
            job, checkpoint = self._restart(exporter, checkpoint)
        count = 0
        try:
            for record in with_null_text(exporter.records(checkpoint.export_id, job, typer), typer, self._reread):
                count += 1
                yield self._complete(record, checkpoint.fields)
        except ApiError as exc:
            # A completed file can be gone (kept 7 days; a resumed job may be older): export again.
            if exc.code != "file-not-found" or count:
                raise
            self.logger.warning("Export %s file is gone (%s); exporting the window again", checkpoint.export_id, exc)
            job, checkpoint = self._restart(exporter, checkpoint)
            for record in with_null_text(exporter.records(checkpoint.export_id, job, typer), typer, self._reread):
                count += 1
                yield self._complete(record, checkpoint.fields)
        self.logger.info("Export %s: %d persons", checkpoint.export_id, count)

    def _reread(self, ids: list[Any], fields: list[str]) -> Iterator[dict[str, Any]]:
        """Persons by id through ``leads.json`` (values.with_null_text: the word "null" versus empty)."""
        return self._client.get_leads("id", ids, fields)

    def _restart(self, exporter: LeadExporter, checkpoint: ExportCheckpoint) -> tuple[dict[str, Any], ExportCheckpoint]:
        export_id = exporter.start(checkpoint.fields, _parse_time(checkpoint.start), _parse_time(checkpoint.end))
        fresh = replace(checkpoint, export_id=export_id)
        self.stream_state["export"] = fresh.to_state()
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
        state.pop("export", None)
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
