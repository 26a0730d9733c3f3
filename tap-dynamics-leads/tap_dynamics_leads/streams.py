"""``dynamics_leads`` and ``dynamics_contacts``: change tracking with deletes, or a modifiedon bookmark.

Change tracking (the default) keeps the delta link in the stream state; deletions arrive as
``$deletedEntity`` items and become delete records (docs/architecture.md §9.3). An expired or refused delta link
means a full read, said loudly. Where change tracking is off (the setting, or the table), rows come
in ``modifiedon, key`` order from the bookmark with ``ge``, and the rows already sent at the
bookmark second (remembered with their ETags) are not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from mktdyn_common.state import EXTRACTION, FULL, INCREMENTAL
from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import Metadata

from tap_dynamics_leads import odata
from tap_dynamics_leads.errors import ChangeTokenExpiredError, DataverseApiError
from tap_dynamics_leads.metadata import EntityDefinition
from tap_dynamics_leads.schema import (
    DELETED_AT_PROPERTY,
    ETAG_PROPERTY,
    REPLICATION_KEY,
    automatic_properties,
    readable_columns,
    stream_schema,
)

if TYPE_CHECKING:
    from tap_dynamics_leads.client import DataverseClient
    from tap_dynamics_leads.tap import TapDynamicsLeads

DELTA_LINK = "delta_link"
DELTA_SELECT = "delta_select"
BOUNDARY_ETAGS = "boundary_etags"


def utc_now_iso() -> str:
    """Now, formatted as Dataverse formats times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tracking_refused(error: DataverseApiError) -> bool:
    """Whether Dataverse refused ``odata.track-changes`` because the table does not track changes."""
    message = error.api_message.lower()
    return error.status == 400 and "change tracking" in message and "not enabled" in message


class DataverseStream(Stream):
    """One Dataverse table as a Singer stream."""

    logical_name: ClassVar[str] = ""
    stream_name: ClassVar[str] = ""
    #: Records are built from Dataverse's typed JSON, only with properties of a schema derived from the
    #: same metadata, so the SDK's per-value conformance pass (about 40% of a run) would change nothing.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapDynamicsLeads, entity: EntityDefinition) -> None:
        self.entity = entity
        self._columns = readable_columns(entity) if entity.attributes else {}
        self._tracking = tap.connection.change_tracking and entity.change_tracking_enabled
        super().__init__(tap=tap, schema=stream_schema(entity), name=self.stream_name)
        self.primary_keys = [entity.primary_id]
        self.replication_key = REPLICATION_KEY
        self._client_source = tap

    # -- SDK hooks -------------------------------------------------------------------------------
    @property
    def is_sorted(self) -> bool:
        """The modifiedon path reads in bookmark order (resumable); change tracking does not."""
        return not self._tracking

    def get_replication_key_signpost(self, context: Any = None) -> None:
        """No signpost: bookmarks are Dataverse's clock, which need not agree with this machine's."""
        return

    @property
    def metadata(self) -> Any:
        """Standard metadata with docs/architecture.md §9.3's always-sent properties forced to ``automatic``.

        Applied on top of an input catalog too, so no selection can drop the key, the email or the
        ETag the merge depends on.
        """
        mapping = super().metadata
        if not getattr(self, "_automatic_applied", False):
            for name in automatic_properties(self.schema, self.entity.primary_id):
                entry = mapping.get(("properties", name))
                if entry is None:
                    mapping[("properties", name)] = Metadata(inclusion=Metadata.InclusionType.AUTOMATIC)
                else:
                    entry.inclusion = Metadata.InclusionType.AUTOMATIC
            self._automatic_applied = True
        return mapping

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """Changed rows and deletes (change tracking), or rows since the bookmark."""
        state = self.get_context_state(context)
        if not self._tracking:
            self.logger.info(
                "Stream '%s': change tracking is %s; reading by modifiedon bookmark (deletes are not seen).",
                self.name,
                "off in the settings" if not self._client_source.connection.change_tracking else "off on the table",
            )
            yield from self._since_bookmark(state, context)
            return
        try:
            yield from self._tracked(state)
        except DataverseApiError as exc:
            if not tracking_refused(exc):
                raise
            self.logger.warning(
                "Stream '%s': Dataverse refused change tracking (%s); falling back to the modifiedon bookmark.",
                self.name,
                exc.api_message,
            )
            state.pop(DELTA_LINK, None)
            yield from self._since_bookmark(state, context)

    # -- the two paths ----------------------------------------------------------------------------
    @property
    def client(self) -> DataverseClient:
        """The tap's shared client."""
        return self._client_source.client

    def selected_columns(self) -> list[str]:
        """``$select``: the selected properties that are columns (the key always first)."""
        key = self.entity.primary_id
        names = [name for name in self.schema["properties"] if self.mask.get(("properties", name), True)]
        columns = [name for name in names if name in self._columns and name != key]
        return [key, *columns]

    def _tracked(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        select = self.selected_columns()
        select_text = ",".join(select)
        delta_link = state.get(DELTA_LINK)
        if delta_link and state.get(DELTA_SELECT) != select_text:
            self.logger.warning(
                "Stream '%s': the column selection changed since the last run; reading every "
                "row again so the new columns are filled.",
                self.name,
            )
            delta_link = None
        try:
            yield from self._read_changes(state, select, delta_link)
        except ChangeTokenExpiredError as exc:
            if not delta_link:
                raise
            self.logger.warning(
                "DELTA TOKEN EXPIRED for stream '%s' (Dataverse %s: %s). Starting a FULL RESYNC of every row; "
                "deletes made during the gap are only found by key reconciliation in the target.",
                self.name,
                exc.code,
                exc.api_message,
            )
            state.pop(DELTA_LINK, None)
            yield from self._read_changes(state, select, None)

    def _read_changes(
        self, state: dict[str, Any], select: list[str], delta_link: str | None
    ) -> Iterator[dict[str, Any]]:
        new_link: str | None = None
        full = delta_link is None
        state[EXTRACTION] = FULL if full else INCREMENTAL  # the target checks its store against it
        if full:
            # A read of every row: its records carry a version, and ACTIVATE_VERSION closes it, so a loader can
            # tell that rows it holds but this read did not return were deleted (key reconciliation).
            self._stream_version = int(time.time() * 1000)
        for page in self.client.changes(self.entity.entity_set_name, select, delta_link):
            for row in page.rows:
                yield self._record(row, select)
            for row_id in page.deleted:
                yield self._delete_record(row_id)
            new_link = page.delta_link or new_link
        if full and self._stream_version is not None:
            self._write_activate_version_message(self._stream_version)
            self._stream_version = None
        if new_link:
            state[DELTA_LINK] = new_link
            state[DELTA_SELECT] = ",".join(select)
        else:
            self.logger.warning(
                "Stream '%s': Dataverse returned no delta link; the next run reads every row.", self.name
            )
            state.pop(DELTA_LINK, None)

    def _since_bookmark(self, state: dict[str, Any], context: Any) -> Iterator[dict[str, Any]]:
        select = self.selected_columns()
        if REPLICATION_KEY not in select:
            select.append(REPLICATION_KEY)
        start = self.get_starting_replication_key_value(context) or self.config.get("start_date")
        start_text = odata.datetime_literal(str(start)) if start else None
        bookmark = odata.parse_datetime(str(start)) if start else None
        same_bookmark = (
            bookmark is not None
            and state.get("replication_key_value")
            and odata.parse_datetime(str(state["replication_key_value"])) == bookmark
        )
        already_sent: dict[str, str] = dict(state.get(BOUNDARY_ETAGS) or {}) if same_bookmark else {}
        key = self.entity.primary_id
        query_filter = f"{REPLICATION_KEY} ge {start_text}" if start_text else None
        orderby = f"{REPLICATION_KEY} asc,{odata.identifier(key)} asc"
        boundary_time: datetime | None = None
        boundary: dict[str, str] = {}
        for row in self.client.query(self.entity.entity_set_name, select, filter=query_filter, orderby=orderby):
            record = self._record(row, select)
            modified_text = record.get(REPLICATION_KEY)
            if not modified_text:
                continue
            modified = odata.parse_datetime(str(modified_text))
            row_id = str(record[key])
            if modified == bookmark and already_sent.get(row_id) == record.get(ETAG_PROPERTY):
                continue  # sent by the last run at the bookmark second, unchanged since
            if modified != boundary_time:
                boundary_time, boundary = modified, {}
            boundary[row_id] = str(record.get(ETAG_PROPERTY) or "")
            # Written before the SDK advances the bookmark to this row, so every STATE pairs them.
            state[BOUNDARY_ETAGS] = boundary
            yield record

    # -- record shapes -----------------------------------------------------------------------------
    def _record(self, row: dict[str, Any], select: list[str]) -> dict[str, Any]:
        """A row as a record: selected columns (null when absent), the ETag, no annotations."""
        record: dict[str, Any] = {name: row.get(name) for name in select}
        record[ETAG_PROPERTY] = row.get("@odata.etag")
        record[DELETED_AT_PROPERTY] = None
        return record

    def _delete_record(self, row_id: str) -> dict[str, Any]:
        """The key, the deletion time as ``_sdc_deleted_at`` and ``modifiedon``, all else null (architecture §9.3)."""
        now = utc_now_iso()
        record: dict[str, Any] = dict.fromkeys(self.schema["properties"])
        record[self.entity.primary_id] = row_id
        record[DELETED_AT_PROPERTY] = now
        record[REPLICATION_KEY] = now
        return record


class LeadsStream(DataverseStream):
    """Dynamics leads (prospects)."""

    logical_name = "lead"
    stream_name = "dynamics_leads"


class ContactsStream(DataverseStream):
    """Dynamics contacts (customers)."""

    logical_name = "contact"
    stream_name = "dynamics_contacts"


STREAM_TYPES: tuple[type[DataverseStream], ...] = (LeadsStream, ContactsStream)
