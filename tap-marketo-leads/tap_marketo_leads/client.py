"""The Marketo client used by the tap and by the merge target: every Marketo call of mktdyn is here.

A plain module (no SDK stream types) on top of :class:`~tap_marketo_leads.transport.MarketoTransport`,
which owns auth, retries, the call budget and the counters. Methods speak Marketo's REST names
(fields like ``updatedAt``), batch to Marketo's limits (300 per call), and return plain data:
dicts for reads, :class:`~tap_marketo_leads.outcomes.RecordOutcome` for writes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from mktdyn_common.errors import ApiError
from mktdyn_common.metadata_answers import MetadataAnswers

from tap_marketo_leads.connection import MAX_BATCH, MarketoConnection
from tap_marketo_leads.envelope import SYSTEM
from tap_marketo_leads.outcomes import RecordOutcome, outcomes_from_result
from tap_marketo_leads.transport import MarketoTransport, RetryPolicy

logger = logging.getLogger(__name__)

LEAD_ACTIONS = ("createOnly", "updateOnly", "createOrUpdate", "createDuplicate")
#: Marketo rejects bodies over 1 MB; stay clearly below so headers and encoding never tip it over.
MAX_BODY_BYTES = 900_000
#: activities.json accepts at most 10 activity type ids and 30 lead ids per call.
MAX_ACTIVITY_TYPES = 10
MAX_ACTIVITY_LEADS = 30
DELETE_LEAD_ACTIVITY = 37


def iso_z(moment: datetime) -> str:
    """A UTC timestamp the way Marketo wants it in filters: second precision, trailing ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class FeedPage:
    """One page of an activity feed: its items and the token that continues after them."""

    items: list[dict[str, Any]]
    next_token: str
    more: bool


@dataclass(frozen=True)
class ActivityTypeSpec:
    """A custom activity type as mktdyn wants it to exist in Marketo."""

    api_name: str
    name: str
    description: str
    trigger_name: str
    filter_name: str
    primary_attribute: tuple[str, str]
    attributes: tuple[tuple[str, str, str], ...] = ()  # (apiName, name, dataType)


class MarketoClient:
    """Reads and writes Marketo persons, activities and bulk exports for one subscription.

    Args:
        connection: Where and as whom to connect.
        retry: Retry and pacing policy (defaults follow Marketo's documented limits).
        session: A pre-built session (tests); by default a pooled one trusting ``ca_bundle`` only.
        sleep: Replaced in tests to avoid real waits.
    """

    def __init__(
        self,
        connection: MarketoConnection,
        *,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        metadata_answers: MetadataAnswers | None = None,
    ) -> None:
        self.connection = connection
        self._answers = metadata_answers
        if sleep is None:
            self._transport = MarketoTransport(connection, retry, session)
        else:
            self._transport = MarketoTransport(connection, retry, session, sleep=sleep)
        self._describe: list[dict[str, Any]] | None = None
        self._describe2: list[dict[str, Any]] | None = None

    @property
    def calls(self) -> Counter[str]:
        """Requests sent so far, by kind: ``read``, ``write``, ``auth``, ``metadata``."""
        return self._transport.calls

    @property
    def retries(self) -> Counter[str]:
        """Retries so far, by reason (``code-606``, ``connection``, ``file-not-ready`` …)."""
        return self._transport.retries

    @property
    def transport(self) -> MarketoTransport:
        """The HTTP edge (for the export module's file downloads)."""
        return self._transport

    def close(self) -> None:
        """Release pooled connections."""
        self._transport.close()

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _page_size(self) -> int:
        return min(self.connection.page_size, MAX_BATCH)

    # -- metadata ------------------------------------------------------------------------------
    def describe_leads(self) -> list[dict[str, Any]]:
        """The person fields (``leads/describe.json``), fetched once per client."""
        if self._describe is None:
            payload = self._metadata("/rest/v1/leads/describe.json")
            fields = payload.get("result")
            if fields is None:  # every field would look unknown and the field map check would blame the config
                raise ApiError(SYSTEM, "GET /rest/v1/leads/describe.json", "invalid-response", "no 'result' described")
            self._describe = list(fields)
        return self._describe

    def describe_leads2(self) -> list[dict[str, Any]]:
        """The person fields of ``leads/describe2.json`` (with ``updateable``), fetched once per client.

        Describe's ``readOnly`` misses the fields ``leads.json`` updates silently ignore (company fields);
        describe2's ``updateable`` names them, so writers read it (one metadata call per run; the tap does not).
        """
        if self._describe2 is None:
            payload = self._metadata("/rest/v1/leads/describe2.json")
            result = payload.get("result")
            if not result or not isinstance(result[0], Mapping) or not isinstance(result[0].get("fields"), list):
                raise ApiError(SYSTEM, "GET /rest/v1/leads/describe2.json", "invalid-response", "no 'fields' described")
            self._describe2 = list(result[0]["fields"])
        return self._describe2

    def _metadata(self, path: str) -> dict[str, Any]:
        """A metadata answer: from ``metadata_answers`` when it keeps one, else Marketo's (then kept)."""
        if self._answers is None:
            return self._transport.call("GET", path, kind="metadata")
        key = self.connection.base_url + path
        kept = self._answers.get(key)
        if isinstance(kept, dict):
            return kept
        payload = self._transport.call("GET", path, kind="metadata")
        self._answers.put(key, payload)
        return payload

    def get_activity_types(self) -> list[dict[str, Any]]:
        """Every activity type of the instance (standard and custom)."""
        payload = self._transport.call("GET", "/rest/v1/activities/types.json", kind="metadata")
        return list(payload.get("result") or [])

    # -- reading persons -----------------------------------------------------------------------
    def get_leads(self, filter_type: str, values: Iterable[Any], fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Persons whose ``filter_type`` is one of ``values`` (300 values per call, every page).

        Sent as ``POST … _method=GET`` with a form body, so 300 long emails never hit the 8 KB URL limit.
        ``filterValues`` is comma-separated with no escape: a value holding a comma would be split and match
        other persons (``o,neil@x.com`` finding ``neil@x.com``), so such a value is not sent; no person can
        match it exactly, and the caller sees none.
        """
        unique = list(dict.fromkeys(str(value) for value in values if value is not None and str(value) != ""))
        unsendable = [value for value in unique if "," in value]
        if unsendable:
            logger.warning(
                "Marketo %s filter: %d value(s) contain a comma and cannot be looked up exactly; skipped",
                filter_type,
                len(unsendable),
            )
            unique = [value for value in unique if "," not in value]
        field_list = ",".join(dict.fromkeys(["id", *fields]))
        for batch in chunked(unique, MAX_BATCH):
            token: str | None = None
            while True:
                form = {
                    "filterType": filter_type,
                    "filterValues": ",".join(batch),
                    "fields": field_list,
                    "batchSize": str(self._page_size),
                }
                if token:
                    form["nextPageToken"] = token
                payload = self._transport.call(
                    "POST", "/rest/v1/leads.json", kind="read", params={"_method": "GET"}, form=form
                )
                yield from payload.get("result") or []
                token = payload.get("nextPageToken")
                if not token or payload.get("moreResult") is False:
                    break

    # -- activity feeds ------------------------------------------------------------------------
    def get_paging_token(self, since: datetime) -> str:
        """A feed position at ``since`` (``activities/pagingtoken.json``)."""
        payload = self._transport.call(
            "GET", "/rest/v1/activities/pagingtoken.json", kind="read", params={"sinceDatetime": iso_z(since)}
        )
        token = payload.get("nextPageToken")
        if not isinstance(token, str) or not token:
            raise ApiError(
                SYSTEM, "GET /rest/v1/activities/pagingtoken.json", "invalid-response", "no nextPageToken in the answer"
            )
        return token

    def _feed(self, path: str, token: str, params: Mapping[str, Any]) -> Iterator[FeedPage]:
        while True:
            payload = self._transport.call(
                "GET", path, kind="read", params={**params, "nextPageToken": token, "batchSize": str(self._page_size)}
            )
            next_token = payload.get("nextPageToken") or token
            more = bool(payload.get("moreResult"))
            yield FeedPage(list(payload.get("result") or []), str(next_token), more)
            if not more:
                return
            token = str(next_token)

    def lead_changes(self, token: str, fields: Sequence[str]) -> Iterator[FeedPage]:
        """Pages of New Lead and Change Data Value activities after ``token`` for ``fields``."""
        return self._feed("/rest/v1/activities/leadchanges.json", token, {"fields": ",".join(fields)})

    def deleted_leads(self, token: str) -> Iterator[FeedPage]:
        """Pages of Delete Lead activities (type 37) after ``token``."""
        return self._feed("/rest/v1/activities/deletedleads.json", token, {})

    def get_activities(
        self, activity_type_ids: Sequence[int], since: datetime, lead_ids: Sequence[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Activities of the given types since ``since`` (10 types and 30 leads per call, every page)."""
        type_batches = list(chunked(list(activity_type_ids), MAX_ACTIVITY_TYPES))
        lead_batches: list[Sequence[int] | None] = (
            list(chunked(list(lead_ids), MAX_ACTIVITY_LEADS)) if lead_ids else [None]
        )
        start = self.get_paging_token(since)
        for types in type_batches:
            for leads in lead_batches:
                params: dict[str, Any] = {"activityTypeIds": ",".join(str(t) for t in types)}
                if leads is not None:
                    params["leadIds"] = ",".join(str(lead) for lead in leads)
                for page in self._feed("/rest/v1/activities.json", start, params):
                    yield from page.items

    def oldest_activity(self, activity_type_id: int, since: datetime, max_pages: int = 20) -> dict[str, Any] | None:
        """The oldest activity of one type at or after ``since``; None when none is found within ``max_pages``.

        A few calls (a paging token, then pages until the first item): how the first extraction learns when
        the oldest person was created (New Lead activities are kept forever, reference §6.2).
        """
        token = self.get_paging_token(since)
        pages = self._feed("/rest/v1/activities.json", token, {"activityTypeIds": str(activity_type_id)})
        for number, page in enumerate(pages, start=1):
            if page.items:
                return min(page.items, key=lambda item: str(item.get("activityDate") or ""))
            if number >= max_pages:
                break
        return None

    def lead_exports(self, statuses: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Lead export jobs of this API user from the last seven days in the given statuses (every page)."""
        params: dict[str, Any] = {"status": ",".join(statuses), "batchSize": str(self._page_size)}
        while True:
            payload = self._transport.call("GET", "/bulk/v1/leads/export.json", kind="read", params=params)
            yield from (dict(job) for job in payload.get("result") or [])
            token = payload.get("nextPageToken")
            if not token:
                return
            params = {**params, "nextPageToken": str(token)}

    # -- writing persons -----------------------------------------------------------------------
    def sync_leads(self, action: str, records: Sequence[Mapping[str, Any]], lookup_field: str) -> list[RecordOutcome]:
        """Create or update persons, 300 per call, and say what happened to each record.

        Args:
            action: ``updateOnly`` (with ``lookup_field="id"``) or ``createOnly`` (``"email"``) for
                mktdyn's write-back; the other Marketo actions are accepted too.
            records: Persons with REST field names; each must carry ``lookup_field``.
            lookup_field: Marketo's dedupe key for the call.

        Returns:
            One outcome per input record, in input order, ``index`` counting across batches.
        """
        if action not in LEAD_ACTIONS:
            raise ValueError(f"unknown sync action {action!r}; expected one of {', '.join(LEAD_ACTIONS)}")
        outcomes: list[RecordOutcome] = []
        for offset, batch in self._write_batches(
            records, {"action": action, "lookupField": lookup_field, "asyncProcessing": False}
        ):
            payload = self._transport.call(
                "POST",
                "/rest/v1/leads.json",
                kind="write",
                json_body={
                    "action": action,
                    "lookupField": lookup_field,
                    "asyncProcessing": False,
                    "input": list(batch),
                },
            )
            outcomes.extend(
                outcomes_from_result(payload.get("result") or [], offset, len(batch), "POST /rest/v1/leads.json")
            )
        return outcomes

    def delete_leads(self, ids: Sequence[int]) -> list[RecordOutcome]:
        """Delete persons by id, 300 per call."""
        outcomes: list[RecordOutcome] = []
        for offset, batch in self._write_batches([{"id": int(i)} for i in ids], {}):
            payload = self._transport.call(
                "POST", "/rest/v1/leads/delete.json", kind="write", json_body={"input": list(batch)}
            )
            outcomes.extend(
                outcomes_from_result(payload.get("result") or [], offset, len(batch), "POST /rest/v1/leads/delete.json")
            )
        return outcomes

    def _write_batches(
        self, records: Sequence[Mapping[str, Any]], envelope: Mapping[str, Any]
    ) -> Iterator[tuple[int, Sequence[Mapping[str, Any]]]]:
        """Batches of ≤300 records whose JSON body stays under Marketo's 1 MB limit."""
        overhead = len(json.dumps(envelope)) + 32
        offset = 0
        for batch in chunked(list(records), MAX_BATCH):
            pending: list[Sequence[Mapping[str, Any]]] = [batch]
            while pending:
                part = pending.pop(0)
                size = overhead + len(json.dumps(list(part), ensure_ascii=False).encode("utf-8"))
                if size > MAX_BODY_BYTES and len(part) > 1:
                    middle = len(part) // 2
                    pending[:0] = [part[:middle], part[middle:]]
                    continue
                yield offset, part
                offset += len(part)

    # -- custom activities ---------------------------------------------------------------------
    def list_custom_activity_types(self) -> list[dict[str, Any]]:
        """Custom activity types of the instance, with their status."""
        payload = self._transport.call("GET", "/rest/v1/activities/external/types.json", kind="metadata")
        return list(payload.get("result") or [])

    def describe_custom_activity_type(self, api_name: str, draft: bool = False) -> dict[str, Any]:
        """One custom activity type (its approved version, or the draft)."""
        payload = self._transport.call(
            "GET",
            f"/rest/v1/activities/external/type/{api_name}/describe.json",
            kind="metadata",
            params={"draft": "true"} if draft else None,
        )
        result = payload.get("result") or [{}]
        return dict(result[0])

    def create_custom_activity_type(self, spec: ActivityTypeSpec) -> dict[str, Any]:
        """Create the type as a draft."""
        primary_api_name, primary_name = spec.primary_attribute
        body = {
            "apiName": spec.api_name,
            "name": spec.name,
            "description": spec.description,
            "triggerName": spec.trigger_name,
            "filterName": spec.filter_name,
            "primaryAttribute": {"apiName": primary_api_name, "name": primary_name},
        }
        payload = self._transport.call(
            "POST", "/rest/v1/activities/external/type.json", kind="metadata", json_body=body
        )
        result = payload.get("result") or [{}]
        return dict(result[0])

    def add_custom_activity_attributes(self, api_name: str, attributes: Sequence[tuple[str, str, str]]) -> None:
        """Add secondary attributes ``(apiName, name, dataType)`` to the type's draft."""
        body = {"attributes": [{"apiName": a, "name": n, "dataType": d} for a, n, d in attributes]}
        self._transport.call(
            "POST",
            f"/rest/v1/activities/external/type/{api_name}/attributes/create.json",
            kind="metadata",
            json_body=body,
        )

    def approve_custom_activity_type(self, api_name: str) -> dict[str, Any]:
        """Approve the draft so activities of the type can be added."""
        payload = self._transport.call(
            "POST", f"/rest/v1/activities/external/type/{api_name}/approve.json", kind="metadata"
        )
        result = payload.get("result") or [{}]
        return dict(result[0])

    def ensure_activity_type(self, spec: ActivityTypeSpec) -> int:
        """Make sure ``spec`` exists, approved, with all its attributes; return its type id.

        Idempotent: an approved type with every attribute costs one call; a missing type is created,
        given its attributes and approved; missing attributes are added and the type re-approved.
        """
        existing = next((t for t in self.list_custom_activity_types() if t.get("apiName") == spec.api_name), None)
        if existing is None:
            logger.info("Creating Marketo custom activity type %s", spec.api_name)
            existing = self.create_custom_activity_type(spec)
        known = {str(a.get("apiName")) for a in existing.get("attributes") or []}
        missing = [a for a in spec.attributes if a[0] not in known]
        if missing:
            self.add_custom_activity_attributes(spec.api_name, missing)
        if missing or existing.get("status") != "approved":
            existing = {**existing, **self.approve_custom_activity_type(spec.api_name)}
        type_id = existing.get("id")
        if type_id is None:
            type_id = self.describe_custom_activity_type(spec.api_name).get("id")
        if type_id is None:
            raise ApiError(
                SYSTEM,
                "activities/external/type",
                "invalid-response",
                f"no id for custom activity type {spec.api_name}",
            )
        return int(type_id)

    def add_activities(self, items: Sequence[Mapping[str, Any]]) -> list[RecordOutcome]:
        """Post custom activities (300 per call), one outcome per item.

        Not retried once possibly received (activities cannot be deleted, a repeat would be a
        duplicate): a :class:`~mktdyn_common.errors.TransientError` with code ``in-doubt`` tells the
        caller to check before posting again.
        """
        outcomes: list[RecordOutcome] = []
        for offset, batch in self._write_batches(items, {}):
            payload = self._transport.call(
                "POST",
                "/rest/v1/activities/external.json",
                kind="write",
                json_body={"input": list(batch)},
                resend_safe=False,
            )
            outcomes.extend(
                outcomes_from_result(
                    payload.get("result") or [], offset, len(batch), "POST /rest/v1/activities/external.json"
                )
            )
        return outcomes

    # -- bulk lead export ----------------------------------------------------------------------
    def create_lead_export(self, fields: Sequence[str], start: datetime, end: datetime) -> str:
        """Create (not yet enqueue) a CSV export of persons changed in ``[start, end)``; return its id.

        Raises:
            MarketoApiError: Code 1035 when the subscription lacks the ``updatedAt`` filter.
        """
        body = {
            "fields": list(fields),
            "format": "CSV",
            "filter": {"updatedAt": {"startAt": iso_z(start), "endAt": iso_z(end)}},
        }
        job = self._job("POST", "/bulk/v1/leads/export/create.json", json_body=body)
        export_id = job.get("exportId")
        if not export_id:
            raise ApiError(SYSTEM, "POST /bulk/v1/leads/export/create.json", "invalid-response", "no exportId")
        return str(export_id)

    def enqueue_lead_export(self, export_id: str) -> dict[str, Any]:
        """Put a created export in the processing queue."""
        return self._job("POST", f"/bulk/v1/leads/export/{export_id}/enqueue.json")

    def lead_export_status(self, export_id: str) -> dict[str, Any]:
        """The export's job record (``status``, ``fileSize``, ``fileChecksum`` …)."""
        return self._job("GET", f"/bulk/v1/leads/export/{export_id}/status.json")

    def cancel_lead_export(self, export_id: str) -> dict[str, Any]:
        """Cancel an export (frees a slot of the 2-processing / 10-queued limits)."""
        return self._job("POST", f"/bulk/v1/leads/export/{export_id}/cancel.json")

    def open_lead_export_file(self, export_id: str, offset: int = 0) -> requests.Response:
        """The export's CSV as a streamed response, from byte ``offset`` (``Range``)."""
        return self._transport.open_file(f"/bulk/v1/leads/export/{export_id}/file.json", offset)

    def _job(self, method: str, path: str, json_body: Any = None) -> dict[str, Any]:
        # Field reports: create/status occasionally answer success without a result; asking again works.
        for _ in range(3):
            # Export jobs are extraction: counted as reads, so "write" means records written to Marketo.
            payload = self._transport.call(method, path, kind="read", json_body=json_body)
            result = payload.get("result")
            if result:
                return dict(result[0])
            logger.warning("Marketo %s answered success without a result; asking again", path)
        raise ApiError(SYSTEM, f"{method} {path}", "invalid-response", "success without a result, three times")
