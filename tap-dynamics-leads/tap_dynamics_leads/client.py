"""The Dataverse Web API client shared by tap-dynamics-leads and the merge target (docs/architecture.md §2).

A plain module with no Singer types: metadata, paged queries, change tracking, single-row reads and
writes with ETags, ``$batch`` with per-operation results, and lead qualification. HTTP, auth and
retries live in :mod:`tap_dynamics_leads.session`; literals in :mod:`tap_dynamics_leads.odata`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from mktdyn_common.backoff import Backoff
from mktdyn_common.metadata_answers import MetadataAnswers

from tap_dynamics_leads import batch as batch_format
from tap_dynamics_leads import odata
from tap_dynamics_leads.batch import BatchOperation, BatchResult
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import ChangeTokenExpiredError, DataverseApiError, NotFoundError, error_for
from tap_dynamics_leads.metadata import (
    BASE_ATTRIBUTE_SELECT,
    CASTS,
    ENTITY_SELECT,
    AttributeMetadata,
    EntityDefinition,
    merge_details,
    parse_attribute,
    parse_entity,
)
from tap_dynamics_leads.session import KINDS, BearerTokens, DataverseSession

__all__ = ["BatchOperation", "BatchResult", "ChangePage", "DataverseClient", "DataverseConnection"]

logger = logging.getLogger(__name__)
_GUID_IN_URL = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")
#: Values per ``In`` filter: keeps a lookup's URL well under Dataverse's limit, even with long emails.
EMAILS_PER_LOOKUP = 50
#: Keys per ``In`` filter: 100 GUIDs of 36 characters keep the URL around 4 KB.
IDS_PER_LOOKUP = 100


@dataclass(frozen=True)
class ChangePage:
    """One page of a change-tracking read: changed rows, deleted ids, and (last page) the next delta link."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    delta_link: str | None = None


def is_deleted_entity(item: Mapping[str, Any]) -> bool:
    """Whether a change-tracking item is a ``$deletedEntity`` marker rather than a row."""
    context = str(item.get("@odata.context") or "")
    return context.endswith("$deletedEntity") or (item.get("reason") == "deleted" and "id" in item)


class DataverseClient:
    """One Dataverse environment, for reading and writing leads and contacts.

    Nothing touches the network until the first call. ``calls`` counts HTTP requests by kind
    (``read``, ``write``, ``auth``, ``metadata``), retries included, which is what quotas count.
    """

    def __init__(
        self,
        connection: DataverseConnection,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tokens: BearerTokens | None = None,
        metadata_answers: MetadataAnswers | None = None,
    ) -> None:
        self.connection = connection
        self._answers = metadata_answers
        self.calls: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
        self._session = DataverseSession(connection, self.calls, backoff=backoff, sleep=sleep, tokens=tokens)
        self._entities: dict[tuple[str, bool], EntityDefinition] = {}
        self._attributes: dict[str, tuple[AttributeMetadata, ...]] = {}

    # -- metadata ----------------------------------------------------------------------------------
    def entity_definition(self, logical_name: str, *, with_attributes: bool = False) -> EntityDefinition:
        """The table's names, key and change tracking; with its columns in the same call if asked.

        One request either way (``$expand=Attributes``), cached for the client's lifetime.
        """
        key = (logical_name, with_attributes)
        if key in self._entities:
            return self._entities[key]
        if not with_attributes and (logical_name, True) in self._entities:
            return self._entities[(logical_name, True)]
        params: dict[str, str | None] = {"$select": ",".join(ENTITY_SELECT)}
        if with_attributes:
            params["$expand"] = "Attributes"
        body = self._metadata_json(self._entity_url(logical_name) + "?" + odata.encode_query(params))
        entity = parse_entity(body)
        self._entities[key] = entity
        return entity

    def entity_definitions(self, logical_names: Sequence[str]) -> dict[str, EntityDefinition]:
        """Several tables' definitions with their columns, in one request (cached like ``entity_definition``).

        ``EntityDefinitions?$filter=LogicalName eq 'lead' or LogicalName eq 'contact'&$expand=Attributes``:
        a tap's discovery is one metadata call whatever the number of streams. A table the answer lacks is
        an error naming it (the caller cannot build its stream).
        """
        missing = [name for name in logical_names if (name, True) not in self._entities]
        if missing:
            params: dict[str, str | None] = {
                "$select": ",".join(ENTITY_SELECT),
                "$filter": " or ".join(odata.eq("LogicalName", name) for name in missing),
                "$expand": "Attributes",
            }
            url = self._session.url("EntityDefinitions") + "?" + odata.encode_query(params)
            found = {}
            for item in self._rows(self._metadata_json(url), url):
                entity = parse_entity(item)
                found[entity.logical_name] = entity
            for name in missing:
                if name not in found:
                    raise DataverseApiError(
                        self._session.label("GET", url), "invalid_response", f"no table {name!r} in the answer"
                    )
                self._entities[(name, True)] = found[name]
        return {name: self._entities[(name, True)] for name in logical_names}

    def attributes(self, logical_name: str) -> tuple[AttributeMetadata, ...]:
        """Every column with its type-specific metadata (lengths, ranges, options, targets, behaviour).

        One request for the common properties, then one cast request per column type present.
        """
        if logical_name in self._attributes:
            return self._attributes[logical_name]
        base_url = self._entity_url(logical_name) + "/Attributes"
        query = odata.encode_query({"$select": ",".join(BASE_ATTRIBUTE_SELECT)})
        listing = f"{base_url}?{query}"
        items = self._rows(self._metadata_json(listing), listing)
        for item in items:
            if not isinstance(item.get("LogicalName"), str):
                raise DataverseApiError(
                    self._session.label("GET", listing), "invalid_response", f"a column without LogicalName: {item}"
                )
        attributes = {item["LogicalName"]: parse_attribute(item) for item in items}
        present = {attribute.attribute_type for attribute in attributes.values()}
        present |= {"Virtual"} if any(a.is_multiselect for a in attributes.values()) else set()
        for cast, (select, expand, types) in CASTS.items():
            if not types & present:
                continue
            params = {"$select": select, "$expand": expand}
            url = f"{base_url}/Microsoft.Dynamics.CRM.{cast}?{odata.encode_query(params)}"
            for detail in self._rows(self._metadata_json(url), url):
                name = detail.get("LogicalName")
                if name in attributes:
                    attributes[name] = merge_details(attributes[name], detail)
        result = tuple(attributes.values())
        self._attributes[logical_name] = result
        return result

    # -- reads ---------------------------------------------------------------------------------------
    def query(
        self,
        entity_set: str,
        select: Sequence[str],
        filter: str | None = None,
        orderby: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows of ``entity_set``, following ``@odata.nextLink`` with the same page size.

        ``filter`` and ``orderby`` are OData expressions; build their literals with
        :mod:`tap_dynamics_leads.odata`.
        """
        params = {"$select": odata.select_clause(select), "$filter": filter, "$orderby": orderby}
        url = self._session.url(odata.identifier(entity_set)) + "?" + odata.encode_query(params)
        for page in self._pages("read", url, self._prefer(page_size)):
            yield from self._rows(page, url)

    def changes(
        self, entity_set: str, select: Sequence[str], delta_link: str | None = None, page_size: int | None = None
    ) -> Iterator[ChangePage]:
        """Changed rows and deletions since ``delta_link`` (everything, when None), page by page.

        The last page carries the new delta link. Raises :class:`ChangeTokenExpiredError` when the
        delta link is expired or refused, which means: read everything again.
        """
        prefer = self._prefer(page_size, "odata.track-changes")
        if delta_link:
            url = delta_link
        else:
            query = odata.encode_query({"$select": odata.select_clause(select)})
            url = self._session.url(odata.identifier(entity_set)) + "?" + query
        pages = self._pages("read", url, prefer)
        try:
            first = next(pages, None)
        except DataverseApiError as exc:
            if delta_link and exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise ChangeTokenExpiredError(exc.request, exc.code, exc.api_message, exc.status) from exc
            raise
        if first is None:
            return
        yield self._change_page(first)
        for page in pages:
            yield self._change_page(page)

    def get(self, entity_set: str, row_id: str, select: Sequence[str]) -> dict[str, Any] | None:
        """One row by id, or None when it does not exist."""
        url = self._row_url(entity_set, row_id, select)
        response = self._session.send("read", "GET", url, allow=(404,))
        if response.status_code == 404:
            return None
        return self._json(response)

    def find_by_email(
        self, entity_set: str, email: str, select: Sequence[str], column: str = "emailaddress1"
    ) -> list[dict[str, Any]]:
        """Rows whose ``column`` equals ``email`` (quoted as a literal, whatever it contains)."""
        return list(self.query(entity_set, select, filter=odata.eq(column, email)))

    def find_by_emails(
        self, entity_set: str, emails: Sequence[str], select: Sequence[str], column: str = "emailaddress1"
    ) -> Iterator[dict[str, Any]]:
        """Rows whose ``column`` is one of ``emails`` (Dataverse compares text case-insensitively), 50 per request."""
        return self._find_in(entity_set, column, emails, select, EMAILS_PER_LOOKUP)

    def find_by_ids(
        self, entity_set: str, key: str, ids: Sequence[str], select: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Rows whose ``key`` is one of ``ids``, 100 per request; an id with no row is simply absent.

        One request per 100 rows where a GET per id costs 100 (re-reads, delete confirmations, verify).
        """
        columns = [key, *(name for name in select if name != key)]
        return self._find_in(entity_set, key, ids, columns, IDS_PER_LOOKUP)

    def _find_in(
        self, entity_set: str, column: str, values: Sequence[str], select: Sequence[str], per_request: int
    ) -> Iterator[dict[str, Any]]:
        for start in range(0, len(values), per_request):
            yield from self.query(entity_set, select, filter=odata.is_in(column, values[start : start + per_request]))

    # -- writes --------------------------------------------------------------------------------------
    def create(self, entity_set: str, body: Mapping[str, Any], select: Sequence[str] = ()) -> dict[str, Any]:
        """Create a row; returns the row as stored (with ``@odata.etag``).

        Never replayed after a lost connection: the caller resolves a create in doubt by lookup.
        """
        url = self._session.url(odata.identifier(entity_set)) + self._select_query(select)
        response = self._session.send(
            "write",
            "POST",
            url,
            json_body=dict(body),
            resend_safe=False,
            headers={"Prefer": "return=representation", "Content-Type": "application/json"},
        )
        return self._stored(response, entity_set, select)

    def update(
        self, entity_set: str, row_id: str, body: Mapping[str, Any], etag: str | None = None, select: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Update an existing row, only if it still has ``etag`` when given; returns the stored row.

        Raises :class:`~tap_dynamics_leads.errors.PreconditionFailedError` (412) when the row moved
        and :class:`~tap_dynamics_leads.errors.NotFoundError` when it is gone.
        """
        url = self._row_url(entity_set, row_id, select)
        headers = {"If-Match": etag or "*", "Prefer": "return=representation", "Content-Type": "application/json"}
        response = self._session.send("write", "PATCH", url, json_body=dict(body), headers=headers)
        return self._stored(response, entity_set, select, row_id)

    def delete(self, entity_set: str, row_id: str, etag: str | None = None) -> bool:
        """Delete a row (only at ``etag`` when given); False when it was already gone."""
        url = self._session.url(odata.entity_path(entity_set, row_id))
        response = self._session.send("write", "DELETE", url, headers={"If-Match": etag or "*"}, allow=(404,))
        return response.status_code != 404

    def batch(self, operations: Sequence[BatchOperation], continue_on_error: bool = True) -> list[BatchResult]:
        """Run operations in ``$batch`` requests (1000 per request); one result per operation, in order."""
        results: list[BatchResult] = []
        for start in range(0, len(operations), batch_format.MAX_OPERATIONS):
            chunk = operations[start : start + batch_format.MAX_OPERATIONS]
            for result in self._batch_chunk(chunk, continue_on_error):
                results.append(
                    BatchResult(
                        start + result.index,
                        result.status,
                        result.body,
                        result.etag,
                        result.entity_id,
                        result.error_code,
                        result.error_message,
                    )
                )
        return results

    def qualify_lead(
        self,
        lead_id: str,
        *,
        create_contact: bool = True,
        create_account: bool = False,
        create_opportunity: bool = False,
        status: int = 3,
    ) -> list[dict[str, Any]]:
        """Qualify a lead with the ``QualifyLead`` action; returns the created records' references."""
        url = self._session.url(odata.entity_path("leads", lead_id) + "/Microsoft.Dynamics.CRM.QualifyLead")
        body = {
            "CreateAccount": create_account,
            "CreateContact": create_contact,
            "CreateOpportunity": create_opportunity,
            "Status": status,
        }
        response = self._session.send(
            "write", "POST", url, json_body=body, resend_safe=False, headers={"Content-Type": "application/json"}
        )
        created = self._json(response).get("value") if response.content else []
        return [dict(item) for item in created or []]

    def close(self) -> None:
        """Release pooled connections (the process-wide msal application stays for reuse)."""
        self._session.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------
    def _entity_url(self, logical_name: str) -> str:
        name = odata.string_literal(odata.identifier(logical_name))
        return self._session.url(f"EntityDefinitions(LogicalName={name})")

    def _row_url(self, entity_set: str, row_id: str, select: Sequence[str]) -> str:
        return self._session.url(odata.entity_path(entity_set, row_id)) + self._select_query(select)

    @staticmethod
    def _select_query(select: Sequence[str]) -> str:
        return "?" + odata.encode_query({"$select": odata.select_clause(select)}) if select else ""

    def _prefer(self, page_size: int | None, *extra: str) -> dict[str, str]:
        size = page_size or self.connection.page_size
        return {"Prefer": ",".join((*extra, f"odata.maxpagesize={size}"))}

    def _pages(self, kind: str, url: str, headers: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Pages from ``url`` on, following next links; the next page is fetched while this one is used.

        Dataverse needs time to build a 5000-row page and the caller needs time to process one, so
        the two overlap: at most two pages are in memory, and an error surfaces at the page it hit.
        """
        page = self._get_json(kind, url, headers)
        pool: ThreadPoolExecutor | None = None
        try:
            while True:
                link = page.get("@odata.nextLink")
                pending: Future[dict[str, Any]] | None = None
                if link:
                    pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataverse-page")
                    pending = pool.submit(self._get_json, kind, str(link), headers)
                yield page
                if pending is None:
                    return
                page = pending.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _change_page(self, page: Mapping[str, Any]) -> ChangePage:
        rows: list[dict[str, Any]] = []
        deleted: list[str] = []
        for item in self._rows(page, "a change-tracking page"):
            if is_deleted_entity(item):
                deleted.append(str(item["id"]))
            else:
                rows.append(item)
        link = page.get("@odata.deltaLink")
        return ChangePage(rows, deleted, str(link) if link else None)

    def _rows(self, page: Mapping[str, Any], url: str) -> list[dict[str, Any]]:
        """The ``value`` of a collection response, which Dataverse always sends as a list of objects.

        Anything else (missing, a string, a list of numbers) would be read as no rows or as garbage rows,
        so it is an error naming the request instead.
        """
        rows = page.get("value")
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DataverseApiError(
                self._session.label("GET", url) if "://" in url else f"GET {url}",
                "invalid_response",
                f"expected 'value' to be a list of objects, got {str(rows)[:120]!r}",
            )
        return rows

    def _metadata_json(self, url: str) -> dict[str, Any]:
        """A metadata answer: from ``metadata_answers`` when it keeps one, else the API's (then kept)."""
        if self._answers is None:
            return self._get_json("metadata", url)
        kept = self._answers.get(url)
        if isinstance(kept, dict):
            return kept
        body = self._get_json("metadata", url)
        self._answers.put(url, body)
        return body

    def _get_json(self, kind: str, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._json(self._session.send(kind, "GET", url, headers=headers))

    def _json(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise DataverseApiError(
                self._session.label(response.request.method or "GET", response.url),
                "invalid_json",
                f"expected JSON, got {response.text[:200]!r}",
                response.status_code,
            ) from exc
        if not isinstance(body, dict):
            raise DataverseApiError(
                self._session.label("GET", response.url), "invalid_json", "expected a JSON object", response.status_code
            )
        return body

    def _stored(
        self, response: requests.Response, entity_set: str, select: Sequence[str], row_id: str | None = None
    ) -> dict[str, Any]:
        """The row as stored: the representation, or a read-back when the server sent none."""
        if response.content:
            return self._json(response)
        entity_url = response.headers.get("OData-EntityId") or response.headers.get("Location") or ""
        found = _GUID_IN_URL.search(entity_url)
        identifier = row_id or (found.group(1) if found else None)
        if identifier is None:
            raise DataverseApiError(
                self._session.label("POST", response.url),
                "no_entity_id",
                "the write succeeded but returned neither a row nor its id",
                response.status_code,
            )
        stored = self.get(entity_set, identifier, select)
        if stored is None:
            raise NotFoundError(
                self._session.label("GET", entity_set), "", f"row {identifier} vanished after write", 404
            )
        return stored

    def _batch_chunk(self, operations: Sequence[BatchOperation], continue_on_error: bool) -> list[BatchResult]:
        content_type, body = batch_format.build(operations, self.connection.api_url)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self._session.send(
            "write", "POST", self._session.url("$batch"), data=body, headers=headers, resend_safe=False, allow=(400,)
        )
        answer_type = response.headers.get("Content-Type", "")
        if "multipart" not in answer_type.lower():
            raise error_for(response, self._session.label("POST", response.url))
        return batch_format.parse(answer_type, response.content, len(operations))
