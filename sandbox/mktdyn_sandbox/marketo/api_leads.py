"""HTTP handlers of the lead database: describe, read by filter/id/list, Sync Leads, delete."""

from __future__ import annotations

from typing import Any

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.marketo.envelope import fail, ok
from mktdyn_sandbox.marketo.fields import CATALOGUE, DEFAULT_READ_FIELDS, FIELDS, FILTER_TYPES
from mktdyn_sandbox.marketo.params import MAX_BATCH, batch_size, decode_position, encode_position, json_object
from mktdyn_sandbox.marketo.persons import ACTIONS, PersonService
from mktdyn_sandbox.marketo.store import PersonStore
from mktdyn_sandbox.web import Request, Response

MAX_FILTER_VALUES = 300
MAX_FILTER_MATCHES = 1000


def shape(person: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """A person as leads.json returns it: default fields skip nulls, requested fields keep them."""
    if fields is None:
        return {name: person[name] for name in DEFAULT_READ_FIELDS if person.get(name) is not None}
    shaped = {"id": person["id"]}
    shaped.update({name: person.get(name) for name in fields})
    return shaped


class LeadsApi:
    """describe.json, describe2.json, leads.json (GET/POST/DELETE), lead/{id}.json, list leads, delete."""

    def __init__(self, store: PersonStore, persons: PersonService, clock: SandboxClock) -> None:
        self.store = store
        self.persons = persons
        self.clock = clock

    def _fields(self, request: Request, now: float) -> list[str] | None:
        names = request.params("fields")
        if not names:
            return None
        unknown = [name for name in names if name not in FIELDS]
        if unknown:
            fail(now, "1006", f"Field '{unknown[0]}' not found")
        return names

    def describe(self, request: Request) -> Response:
        """Every REST-visible person field with its type, length and read-only flag."""
        return ok(self.clock.time(), [spec.describe() for spec in CATALOGUE])

    def describe2(self, request: Request) -> Response:
        """The searchable fields (valid filterTypes) and the field list, describe2 style."""
        result = {
            "name": "API Lead",
            "searchableFields": [[name] for name in FILTER_TYPES],
            "fields": [spec.describe2() for spec in CATALOGUE],
        }
        return ok(self.clock.time(), [result])

    def by_filter(self, request: Request) -> Response:
        """``leads.json?filterType=..&filterValues=..`` with id-ordered position paging."""
        now = self.clock.time()
        filter_type = request.param("filterType")
        if not filter_type:
            fail(now, "1003", "filterType not specified")
        if filter_type not in FILTER_TYPES:
            fail(now, "1011", f"Field '{filter_type}' not supported as filterType")
        values = request.params("filterValues")
        if not values:
            fail(now, "1003", "filterValues not specified")
        if len(values) > MAX_FILTER_VALUES:
            fail(now, "1003", f"Too many filterValues (max {MAX_FILTER_VALUES})")
        if FIELDS[filter_type].data_type in ("integer", "reference") and not all(
            v.lstrip("-").isdigit() for v in values
        ):
            fail(now, "1003", f"Invalid filterValues for filterType '{filter_type}'")
        fields = self._fields(request, now)
        size = batch_size(request, now)
        after = decode_position(request, "leads", now)
        if self.store.count_matching(filter_type, values, MAX_FILTER_MATCHES + 1) > MAX_FILTER_MATCHES:
            fail(now, "1003", "Too many results match the filter")
        page = self.store.page_matching(filter_type, values, after, size + 1)
        return self._page(now, page, size, fields, "leads")

    def _page(self, now: float, page: list[dict[str, Any]], size: int, fields: list[str] | None, kind: str) -> Response:
        more = len(page) > size
        page = page[:size]
        extra: dict[str, Any] = {}
        if more:
            extra = {"nextPageToken": encode_position(kind, page[-1]["id"]), "moreResult": True}
        return ok(now, [shape(person, fields) for person in page], **extra)

    def by_id(self, request: Request, lead_id: str) -> Response:
        """``lead/{id}.json``: one lead, or an empty result."""
        now = self.clock.time()
        fields = self._fields(request, now)
        person = self.store.get(int(lead_id))
        return ok(now, [] if person is None else [shape(person, fields)])

    def list_members(self, request: Request, list_id: str) -> Response:
        """``list/{id}/leads.json``: members of a static list."""
        now = self.clock.time()
        if not self.store.list_exists(int(list_id)):
            fail(now, "1013", f"Static list {list_id} not found")
        fields = self._fields(request, now)
        size = batch_size(request, now)
        after = decode_position(request, f"list{list_id}", now)
        page = self.store.page_list_members(int(list_id), after, size + 1)
        return self._page(now, page, size, fields, f"list{list_id}")

    def sync(self, request: Request) -> Response:
        """Sync Leads: createOrUpdate/createOnly/updateOnly/createDuplicate, results in input order."""
        now = self.clock.time()
        body = json_object(request, now)
        records = body.get("input")
        if not isinstance(records, list) or not records:
            fail(now, "1003", "input is required")
        if len(records) > MAX_BATCH:
            fail(now, "1003", f"Max {MAX_BATCH} records per call")
        action = str(body.get("action") or "createOrUpdate")
        if action not in ACTIONS:
            fail(now, "1003", f"Invalid action '{action}'")
        lookup = str(body.get("lookupField") or "email")
        if lookup not in FILTER_TYPES:
            fail(now, "1011", f"Field '{lookup}' not supported as lookupField")
        if lookup == "id" and action != "updateOnly":
            fail(now, "1003", f"Lookup field 'id' is only allowed with action 'updateOnly', not '{action}'")
        return ok(now, self.persons.sync(action, lookup, records))

    def delete(self, request: Request) -> Response:
        """Delete Leads (``leads/delete.json`` POST or ``leads.json`` DELETE)."""
        now = self.clock.time()
        records = json_object(request, now).get("input")
        if not isinstance(records, list) or not records:
            fail(now, "1003", "input is required")
        if len(records) > MAX_BATCH:
            fail(now, "1003", f"Max {MAX_BATCH} records per call")
        return ok(now, self.persons.delete(records))
