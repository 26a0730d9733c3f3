"""HTTP handlers of the activity API: paging tokens, lead changes, deletes, any activity, custom types."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.activities import (
    BUILTIN_TYPES,
    CHANGE_DATA_VALUE,
    DELETE_LEAD,
    NEW_LEAD,
    ActivityLog,
    ActivityQuery,
    PagingToken,
    TokenError,
    render,
)
from mktdyn_sandbox.marketo.activity_types import CustomType, CustomTypeError, CustomTypes
from mktdyn_sandbox.marketo.envelope import fail, ok, skipped
from mktdyn_sandbox.marketo.fields import FIELDS, parse_datetime
from mktdyn_sandbox.marketo.params import MAX_BATCH, batch_size, int_list, json_object, optional_json_object
from mktdyn_sandbox.marketo.store import PersonStore
from mktdyn_sandbox.stats import Stats
from mktdyn_sandbox.web import Request, Response

MAX_TYPE_IDS = 10
MAX_LEAD_IDS = 30
MAX_ATTRIBUTE_BYTES = 65536
ADD_REQUIRED = ("leadId", "activityDate", "activityTypeId", "primaryAttributeValue", "attributes")


class ActivitiesApi:
    """pagingtoken, leadchanges, deletedleads, activities.json, types.json, activities/external/*."""

    def __init__(
        self, db: Database, log: ActivityLog, types: CustomTypes, store: PersonStore, clock: SandboxClock, stats: Stats
    ) -> None:
        self.db = db
        self.log = log
        self.types = types
        self.store = store
        self.clock = clock
        self.stats = stats

    # -- feed ---------------------------------------------------------------------------------------
    def paging_token(self, request: Request) -> Response:
        """A token positioned at ``sinceDatetime`` (``2015-10-06`` and full ISO forms accepted)."""
        now = self.clock.time()
        since = request.param("sinceDatetime")
        if not since:
            fail(now, "1003", "sinceDatetime not specified")
        try:
            moment = parse_datetime(since)
        except ValueError:
            fail(now, "1003", f"Invalid sinceDatetime '{since}'")
        return ok(now, None, nextPageToken=PagingToken(int(moment.timestamp() * 1000), 0).encode())

    def _token(self, request: Request, now: float) -> PagingToken:
        raw = request.param("nextPageToken")
        if not raw:
            fail(now, "1003", "nextPageToken not specified")
        try:
            return PagingToken.decode(raw)
        except TokenError:
            fail(now, "1003", "Invalid nextPageToken")

    def _list_id(self, request: Request, now: float) -> int | None:
        raw = request.param("listId")
        if raw in (None, ""):
            return None
        if not str(raw).isdigit() or not self.store.list_exists(int(str(raw))):
            fail(now, "1013", f"Static list {raw} not found")
        return int(str(raw))

    def _feed(self, request: Request, query: ActivityQuery, *, lead_changes: bool = False) -> Response:
        now = self.clock.time()
        token = self._token(request, now)
        rows, next_token, more = self.log.page(token, query, batch_size(request, now))
        extra: dict[str, Any] = {"nextPageToken": next_token.encode(), "moreResult": more}
        result = [render(row, lead_changes=lead_changes) for row in rows] or None
        return ok(now, result, **extra)

    def lead_changes(self, request: Request) -> Response:
        """New Lead and Change Data Value activities for the named ``fields``."""
        now = self.clock.time()
        fields = request.params("fields")
        if not fields:
            fail(now, "1003", "fields not specified")
        unknown = [name for name in fields if name not in FIELDS]
        if unknown:
            fail(now, "1006", f"Field '{unknown[0]}' not found")
        query = ActivityQuery(
            (NEW_LEAD, CHANGE_DATA_VALUE),
            int_list(request, "leadIds", now, MAX_LEAD_IDS),
            self._list_id(request, now),
            fields,
        )
        return self._feed(request, query, lead_changes=True)

    def deleted_leads(self, request: Request) -> Response:
        """Delete Lead activities."""
        return self._feed(request, ActivityQuery((DELETE_LEAD,)))

    def activities(self, request: Request) -> Response:
        """Any activity types (at most ten), optionally for some leads or a list's members."""
        now = self.clock.time()
        type_ids = int_list(request, "activityTypeIds", now, MAX_TYPE_IDS)
        if not type_ids:
            fail(now, "1003", "activityTypeIds not specified")
        query = ActivityQuery(type_ids, int_list(request, "leadIds", now, MAX_LEAD_IDS), self._list_id(request, now))
        return self._feed(request, query)

    def activity_types(self, request: Request) -> Response:
        """Built-in types plus approved custom ones."""
        custom = [self._type_summary(kind) for kind in self.types.all() if kind.approved is not None]
        return ok(self.clock.time(), [*BUILTIN_TYPES, *custom])

    @staticmethod
    def _type_summary(kind: CustomType) -> dict[str, Any]:
        version = kind.approved or {}
        primary = version.get("primaryAttribute", {})
        return {
            "id": kind.type_id,
            "apiName": kind.api_name,
            "name": version.get("name"),
            "description": version.get("description", ""),
            "primaryAttribute": {
                "apiName": primary.get("apiName"),
                "name": primary.get("name"),
                "dataType": primary.get("dataType", "string"),
            },
            "attributes": [
                {"apiName": a["apiName"], "name": a["name"], "dataType": a["dataType"]}
                for a in version.get("attributes", [])
            ],
        }

    # -- custom types -------------------------------------------------------------------------------
    def _type_call(self, action: Callable[[], CustomType], *, draft: bool = False) -> Response:
        now = self.clock.time()
        try:
            kind = action()
        except CustomTypeError as exc:
            fail(now, exc.code, exc.message)
        return ok(now, [kind.describe(draft=draft)])

    def custom_types(self, request: Request) -> Response:
        """Every custom type (approved version when there is one)."""
        return ok(self.clock.time(), [kind.describe() for kind in self.types.all()])

    def custom_type_create(self, request: Request) -> Response:
        """Create a type in ``draft``."""
        body = json_object(request, self.clock.time())
        return self._type_call(lambda: self.types.create(body), draft=True)

    def custom_type_update(self, request: Request, api_name: str) -> Response:
        """Edit the draft's names."""
        body = json_object(request, self.clock.time())
        return self._type_call(lambda: self.types.update(api_name, body), draft=True)

    def custom_type_describe(self, request: Request, api_name: str) -> Response:
        """One type; ``draft=true`` shows the draft."""
        draft = (request.param("draft") or "").lower() == "true"
        return self._type_call(lambda: self.types.get(api_name), draft=draft)

    def custom_type_approve(self, request: Request, api_name: str) -> Response:
        """Publish the draft."""
        optional_json_object(request, self.clock.time())
        return self._type_call(lambda: self.types.approve(api_name))

    def custom_type_discard(self, request: Request, api_name: str) -> Response:
        """Drop the draft."""
        return self._type_call(lambda: self.types.discard_draft(api_name))

    def custom_type_delete(self, request: Request, api_name: str) -> Response:
        """Remove the type."""
        return self._type_call(lambda: self.types.delete(api_name))

    def custom_type_attributes(self, request: Request, api_name: str, operation: str) -> Response:
        """attributes/create|update|delete.json on the draft."""
        body = json_object(request, self.clock.time())
        return self._type_call(
            lambda: self.types.change_attributes(api_name, operation, body.get("attributes")), draft=True
        )

    # -- custom activities --------------------------------------------------------------------------
    def add_custom(self, request: Request) -> Response:
        """``activities/external.json``: per-record ``added`` or ``skipped`` (with ``errors``)."""
        now = self.clock.time()
        records = json_object(request, now).get("input")
        if not isinstance(records, list) or not records:
            fail(now, "1003", "input is required")
        if len(records) > MAX_BATCH:
            fail(now, "1003", f"Max {MAX_BATCH} records per call")
        results: list[dict[str, Any]] = []
        with self.db.transaction() as conn:
            for record in records:
                outcome = self._check_custom(record)
                if isinstance(outcome, dict):
                    results.append(outcome)
                    continue
                lead_id, when_ms, type_id, primary, attributes = outcome
                activity_id = self.log.custom(conn, lead_id, when_ms, type_id, primary, attributes)
                results.append({"id": activity_id, "marketoGUID": str(activity_id), "status": "added"})
                self.stats.count_written("activities")
        return ok(now, results)

    def _check_custom(self, record: Any) -> dict[str, Any] | tuple[int, int, int, str, list[dict[str, Any]]]:
        """The activity to store, or the skipped result explaining why not."""
        if not isinstance(record, dict):
            return skipped("1003", "Invalid input record", "errors")
        missing = [key for key in ADD_REQUIRED if record.get(key) in (None, "")]
        if missing:
            return skipped("1003", f"Value for required field '{missing[0]}' not specified", "errors")
        try:
            lead_id, type_id = int(record["leadId"]), int(record["activityTypeId"])
            when_ms = int(parse_datetime(str(record["activityDate"])).timestamp() * 1000)
        except (TypeError, ValueError):
            return skipped("1003", "Invalid leadId, activityTypeId or activityDate", "errors")
        version = self.types.approved_by_id(type_id)
        if version is None:
            return skipped("1013", f"Activity type '{type_id}' not found or not approved", "errors")
        if self.store.get(lead_id) is None:
            return skipped("1004", "Lead not found", "errors")
        raw_attributes = record["attributes"]
        if not isinstance(raw_attributes, list):
            return skipped("1003", "attributes must be an array", "errors")
        if len(json.dumps(raw_attributes).encode("utf-8")) > MAX_ATTRIBUTE_BYTES:
            return skipped("1049", f"Attributes exceed {MAX_ATTRIBUTE_BYTES} bytes", "errors")
        by_key = {a["apiName"]: a for a in version.get("attributes", [])}
        by_key.update({a["name"]: a for a in version.get("attributes", [])})
        attributes: list[dict[str, Any]] = []
        for item in raw_attributes:
            key = item.get("apiName") or item.get("name") if isinstance(item, dict) else None
            spec = by_key.get(str(key))
            if spec is None or not isinstance(item, dict):
                return skipped("1006", f"Attribute '{key}' not found", "errors")
            attributes.append({"name": spec["name"], "value": item.get("value"), "apiName": spec["apiName"]})
        return lead_id, when_ms, type_id, str(record["primaryAttributeValue"]), attributes
