"""The ``leads`` and ``contacts`` entity sets (reference §2, §3, §5).

Queries, paging, change tracking, single-row CRUD, conditional writes, the bulk actions and
``QualifyLead``; write semantics live in :mod:`records`, storage in :mod:`store`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mktdyn_sandbox.dataverse import errors, odata_filter, query
from mktdyn_sandbox.dataverse.metadata import BY_ENTITY_SET, ENTITIES, Entity
from mktdyn_sandbox.dataverse.odata import API_PATH, api_base, entity_link, link, no_content, odata_json
from mktdyn_sandbox.dataverse.query import Prefer
from mktdyn_sandbox.dataverse.records import RecordService, WriteResult, etag_matches
from mktdyn_sandbox.dataverse.store import StoredRow
from mktdyn_sandbox.web import Request, Response, Router

SETS = "|".join(BY_ENTITY_SET)
COUNT_CAP = 5000
TRACKING_FORBIDDEN = ("$filter", "$orderby", "$top", "$expand")


def _entity(entity_set: str) -> Entity:
    return BY_ENTITY_SET[entity_set]


def _body(request: Request, entity: Entity) -> Any:
    try:
        return request.json() if request.body.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.payload_error(entity.entity_set, f"The payload is not valid JSON: {exc}.") from exc


class EntityApi:
    """Handlers of the entity-set routes."""

    def __init__(self, records: RecordService, settings: Callable[[], dict[str, Any]]) -> None:
        self.records = records
        self.store = records.store
        self._settings = settings

    def register(self, router: Router) -> None:
        """Add the entity-set routes."""
        add = router.add
        add("GET", rf"{API_PATH}/(?P<entity_set>{SETS})", self.list_rows, "dataverse GET collection", "read")
        add("GET", rf"{API_PATH}/(?P<entity_set>{SETS})/\$count", self.count_rows, "dataverse GET $count", "read")
        add("POST", rf"{API_PATH}/(?P<entity_set>{SETS})", self.create_row, "dataverse POST collection", "write")
        add(
            "POST",
            rf"{API_PATH}/(?P<entity_set>{SETS})/Microsoft\.Dynamics\.CRM\.(?P<action>CreateMultiple|"
            r"UpdateMultiple|UpsertMultiple)",
            self.bulk_action,
            "dataverse bulk action",
            "write",
        )
        add(
            "POST",
            rf"{API_PATH}/leads\((?P<key>[^/]*)\)/Microsoft\.Dynamics\.CRM\.QualifyLead",
            self.qualify_lead,
            "dataverse QualifyLead",
            "write",
        )
        add("GET", rf"{API_PATH}/(?P<entity_set>{SETS})\((?P<key>.*)\)", self.get_row, "dataverse GET row", "read")
        add(
            "PATCH",
            rf"{API_PATH}/(?P<entity_set>{SETS})\((?P<key>.*)\)",
            self.patch_row,
            "dataverse PATCH row",
            "write",
        )
        add(
            "DELETE",
            rf"{API_PATH}/(?P<entity_set>{SETS})\((?P<key>.*)\)",
            self.delete_row,
            "dataverse DELETE row",
            "write",
        )

    # -- settings -----------------------------------------------------------------------------------------
    def tracking_enabled(self, entity: str) -> bool:
        """Whether change tracking is on for a table (the ``change_tracking`` setting, default on)."""
        return bool(dict(self._settings().get("change_tracking") or {}).get(entity, True))

    def alternate_keys(self, entity: str) -> list[list[str]]:
        """Alternate keys defined on a table (none by default, as on a fresh org)."""
        keys = dict(self._settings().get("alternate_keys") or {}).get(entity) or []
        return [list(columns) for columns in keys]

    def _page_size(self, prefer: Prefer) -> int:
        ceiling = min(int(self._settings().get("max_page_size", query.MAX_PAGE_SIZE)), query.MAX_PAGE_SIZE)
        if prefer.max_page_size is None:
            return ceiling
        # Larger than 5000 is clamped (reference §2.2 leaves error-vs-clamp open); the applied value is echoed.
        size = min(prefer.max_page_size, ceiling)
        prefer.applied.append(f"odata.maxpagesize={size}")
        return size

    # -- keys ---------------------------------------------------------------------------------------------
    def resolve_key(self, entity: Entity, key: str) -> tuple[str | None, dict[str, Any] | None]:
        """A URL key as ``(primary id, None)`` or ``(None, alternate key values)``."""
        try:
            tokens = odata_filter.tokenize(key)
        except odata_filter.FilterError as exc:
            raise self._bad_key(entity) from exc
        if len(tokens) == 1 and tokens[0].kind == "guid":
            return tokens[0].text.lower(), None
        values: dict[str, odata_filter.Literal] = {}
        index = 0
        while index + 2 < len(tokens) and tokens[index].kind == "name" and tokens[index + 1].text == "=":
            values[tokens[index].text] = odata_filter.literal_of(tokens[index + 2])
            index += 3
            if index < len(tokens) and tokens[index].text == ",":
                index += 1
        if index != len(tokens) or not values:
            raise self._bad_key(entity)
        if set(values) == {entity.primary_id} and values[entity.primary_id].kind == "guid":
            return str(values[entity.primary_id].value), None
        if sorted(values) not in [sorted(columns) for columns in self.alternate_keys(entity.logical_name)]:
            raise self._bad_key(entity)
        return None, {name: literal.value for name, literal in values.items()}

    @staticmethod
    def _bad_key(entity: Entity) -> errors.DataverseError:
        name = f"Microsoft.Dynamics.CRM.{entity.logical_name}"
        return errors.bad_request(
            errors.UNKNOWN_PROPERTY,
            f"The key in the request URI is not valid for resource "
            f"'{name}'. Ensure that the names and number of key properties match the declared "
            f"or alternate key properties for the resource '{name}'.",
        )

    def find(self, entity: Entity, record_id: str | None, key_values: dict[str, Any] | None) -> StoredRow | None:
        """The row a URL key addresses, if it exists."""
        if record_id is not None:
            return self.store.get(entity.logical_name, record_id)
        node: odata_filter.Node | None = None
        for name, value in (key_values or {}).items():
            kind = "string" if isinstance(value, str) else "int"
            literal = odata_filter.Literal(kind, value, repr(value))
            compare = odata_filter.Compare("eq", name, literal)
            node = compare if node is None else odata_filter.Logical("and", node, compare)
        assert node is not None
        where, params = odata_filter.to_sql(node, lambda name: query.column(entity, name))
        return self.store.find(entity.logical_name, where, params)

    # -- reads --------------------------------------------------------------------------------------------
    def list_rows(self, request: Request, entity_set: str) -> Response:
        """``GET leads``: a page of rows, a change-tracking snapshot, or a delta."""
        entity = _entity(entity_set)
        prefer = query.parse_prefer(request.header("Prefer"))
        select = query.parse_select(entity, request.param("$select"))
        deltatoken = request.param("$deltatoken")
        skiptoken = request.param("$skiptoken")
        state = query.decode_skiptoken(skiptoken) if skiptoken else None
        tracking = prefer.track_changes or deltatoken is not None or (state or {}).get("m") in ("track", "delta")
        if tracking:
            for option in TRACKING_FORBIDDEN:
                if request.param(option) is not None:
                    raise errors.bad_request(
                        errors.INVALID_ARGUMENT,
                        f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.',
                    )
            if not self.tracking_enabled(entity.logical_name):
                # Unconfirmed on the real service; a 400 makes the client fall back to a modifiedon bookmark.
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    f"Change tracking is not enabled for the entity "
                    f"'{entity.logical_name}'. Enable 'Track changes' on the table.",
                )
            if deltatoken is not None:
                return self._delta(request, entity, select, prefer, deltatoken, state)
            return self._tracked(request, entity, select, prefer, state)
        return self._query(request, entity, select, prefer, state)

    def count_rows(self, request: Request, entity_set: str) -> Response:
        """``GET leads/$count``: the number of rows (``$filter`` honoured) as plain text, capped at 5,000.

        Dataverse answers the ``$count`` segment with a bare number, not JSON, and never counts past its
        aggregate limit (reference §2: the same cap as ``$count=true``).
        """
        entity = _entity(entity_set)
        where, params = query.compile_filter(entity, request.param("$filter"))
        total = self.store.count(entity.logical_name, where, params, COUNT_CAP + 1)
        return Response.text(str(min(total, COUNT_CAP)))

    def _query(
        self, request: Request, entity: Entity, select: list[Any] | None, prefer: Prefer, state: dict[str, Any] | None
    ) -> Response:
        where, params = query.compile_filter(entity, request.param("$filter"))
        order = query.parse_orderby(entity, request.param("$orderby"))
        if request.param("$expand"):
            raise errors.bad_request(
                errors.UNKNOWN_PROPERTY, "$expand on leads and contacts is not supported by the mktdyn sandbox."
            )
        top = query.parse_top(request.param("$top"))
        size = self._page_size(prefer)
        # $top is ignored when odata.maxpagesize is given (page-results.md).
        remaining = (state or {}).get("r", None if prefer.max_page_size else top)
        limit = size if remaining is None else min(size, int(remaining))
        after = (tuple(state["k"]), int(state["s"])) if state else None
        rows = self.store.page(entity.logical_name, where, params, order, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if remaining is not None:
            remaining = int(remaining) - len(rows)
            more = more and remaining > 0
        body: dict[str, Any] = {
            "@odata.context": f"{api_base(request)}/$metadata#{query.context_fragment(entity, select)}"
        }
        if (request.param("$count") or "").lower() == "true":
            total = self.store.count(entity.logical_name, where, params, COUNT_CAP + 1)
            body["@odata.count"] = min(total, COUNT_CAP)
            if total > COUNT_CAP:
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
        body["value"] = [query.render_row(entity, row, select, prefer) for row in rows]
        if more and rows:
            page = int((state or {}).get("p", 1)) + 1
            token = query.encode_skiptoken(
                {"m": "query", "k": list(rows[-1].sort_keys), "s": rows[-1].seq, "r": remaining, "p": page},
                page,
                tracking=False,
            )
            body["@odata.nextLink"] = link(request, entity.entity_set, {"$skiptoken": token})
        self._applied_annotations(prefer)
        return odata_json(body, headers=query.applied_header(prefer))

    @staticmethod
    def _applied_annotations(prefer: Prefer) -> None:
        if prefer.annotations:
            prefer.applied.append(f'odata.include-annotations="{prefer.annotations}"')

    def _tracked(
        self, request: Request, entity: Entity, select: list[Any] | None, prefer: Prefer, state: dict[str, Any] | None
    ) -> Response:
        """The initial change-tracking read: every row, then a deltaLink on the last page."""
        size = self._page_size(prefer)
        snapshot = int((state or {}).get("v", self.store.current_version))
        issued = float((state or {}).get("t", self.records.clock.time()))
        after = ((), int(state["s"])) if state else None
        rows = self.store.page(entity.logical_name, "1", [], [], after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        body: dict[str, Any] = {
            "@odata.context": f"{api_base(request)}/$metadata#{query.context_fragment(entity, select)}",
            "value": [query.render_row(entity, row, select, prefer) for row in rows],
        }
        if more:
            page = int((state or {}).get("p", 1)) + 1
            token = query.encode_skiptoken(
                {"m": "track", "s": rows[-1].seq, "v": snapshot, "t": issued, "p": page}, page, tracking=True
            )
            body["@odata.nextLink"] = link(request, entity.entity_set, {"$skiptoken": token}, keep=("$select",))
        else:
            issued_at = datetime.fromtimestamp(issued, tz=UTC)
            body["@odata.deltaLink"] = link(
                request,
                entity.entity_set,
                {"$deltatoken": query.encode_deltatoken(snapshot, issued_at)},
                keep=("$select",),
            )
        prefer.applied.insert(0, "odata.track-changes")
        self._applied_annotations(prefer)
        return odata_json(body, headers=query.applied_header(prefer))

    def _delta(
        self,
        request: Request,
        entity: Entity,
        select: list[Any] | None,
        prefer: Prefer,
        token: str,
        state: dict[str, Any] | None,
    ) -> Response:
        """Rows changed since the token (new/updated first, then deletions) and a fresh deltaLink."""
        version, issued = query.decode_deltatoken(token)
        if version > self.store.current_version:
            raise errors.bad_request(errors.INVALID_ARGUMENT, f"The delta token '{token}' is not valid.")
        ttl_days = float(self._settings().get("delta_token_ttl_days", 7))
        if self.records.clock.now() - issued > timedelta(days=ttl_days):
            # The Web API status for this is unconfirmed (reference §3); 400 is what clients see for other
            # bad tokens, and the documented code 0x80044352 is what they must key the full resync on.
            raise errors.bad_request(
                errors.EXPIRED_VERSION_STAMP,
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        size = self._page_size(prefer)
        snapshot = int((state or {}).get("v", self.store.current_version))
        phase = str((state or {}).get("ph", "rows"))
        last = int((state or {}).get("lv", version))
        items: list[dict[str, Any]] = []
        more = False
        api = api_base(request)
        if phase == "rows":
            rows = self.store.changed(entity.logical_name, last, snapshot, size + 1)
            items = [query.render_row(entity, row, select, prefer) for row in rows[:size]]
            if len(rows) > size:
                more, last = True, rows[size - 1].version
            else:
                phase, last = "deleted", version
        if phase == "deleted" and not more:
            room = size - len(items)
            deletions = self.store.deletions(entity.logical_name, last, snapshot, room + 1)
            items += [
                {
                    "@odata.context": f"{api}/$metadata#{entity.entity_set}/$deletedEntity",
                    "id": d.id,
                    "reason": "deleted",
                }
                for d in deletions[:room]
            ]
            if len(deletions) > room:
                more = True
                last = deletions[room - 1].version if room else last
        body: dict[str, Any] = {
            "@odata.context": f"{api}/$metadata#{query.context_fragment(entity, select)}/$delta",
            "value": items,
        }
        if more:
            page = int((state or {}).get("p", 1)) + 1
            skip = query.encode_skiptoken(
                {"m": "delta", "v": snapshot, "ph": phase, "lv": last, "p": page}, page, tracking=True
            )
            body["@odata.nextLink"] = link(
                request, entity.entity_set, {"$skiptoken": skip, "$deltatoken": token}, keep=("$select",)
            )
        else:
            fresh = query.encode_deltatoken(snapshot, self.records.clock.now())
            body["@odata.deltaLink"] = link(request, entity.entity_set, {"$deltatoken": fresh}, keep=("$select",))
        prefer.applied.insert(0, "odata.track-changes")
        self._applied_annotations(prefer)
        return odata_json(body, headers=query.applied_header(prefer))

    def get_row(self, request: Request, entity_set: str, key: str) -> Response:
        """``GET leads(<id>)``, with ``If-None-Match`` answered 304 when the version is unchanged."""
        entity = _entity(entity_set)
        record_id, key_values = self.resolve_key(entity, key)
        select = query.parse_select(entity, request.param("$select"))
        prefer = query.parse_prefer(request.header("Prefer"))
        row = self.find(entity, record_id, key_values)
        if row is None:
            raise errors.not_found(entity.logical_name, record_id or key)
        etag = f'W/"{row.version}"'
        if_none_match = request.header("If-None-Match")
        if (
            if_none_match
            and if_none_match != "null"
            and not prefer.annotations
            and not request.param("$expand")
            and etag_matches(if_none_match, row.version)
        ):
            return Response(304, b"", {"ETag": etag, "OData-Version": "4.0"})
        self._applied_annotations(prefer)
        body = {
            "@odata.context": f"{api_base(request)}/$metadata#{query.context_fragment(entity, select)}/$entity",
            **query.render_row(entity, row, select, prefer),
        }
        return odata_json(body, headers={"ETag": etag, **query.applied_header(prefer)})

    # -- writes -------------------------------------------------------------------------------------------
    def _written(
        self, request: Request, entity: Entity, row: StoredRow, prefer: Prefer, created: bool, key: str | None = None
    ) -> Response:
        if prefer.return_representation:
            select = query.parse_select(entity, request.param("$select"))
            prefer.applied.append("return=representation")
            body = {
                "@odata.context": f"{api_base(request)}/$metadata#{query.context_fragment(entity, select)}/$entity",
                **query.render_row(entity, row, select, prefer),
            }
            return odata_json(
                body,
                status=201 if created else 200,
                headers={"ETag": f'W/"{row.version}"', **query.applied_header(prefer)},
            )
        location = entity_link(request, entity.entity_set, key or row.id)
        return no_content({"OData-EntityId": location, "Location": location, **query.applied_header(prefer)})

    def create_row(self, request: Request, entity_set: str) -> Response:
        """``POST leads``: 204 + OData-EntityId, or 201 + the row with ``return=representation``."""
        entity = _entity(entity_set)
        prefer = query.parse_prefer(request.header("Prefer"))
        row = self.records.create(entity, _body(request, entity))
        return self._written(request, entity, row, prefer, created=True)

    def patch_row(self, request: Request, entity_set: str, key: str) -> Response:
        """``PATCH leads(<key>)``: update, create-only, or upsert depending on If-Match/If-None-Match."""
        entity = _entity(entity_set)
        prefer = query.parse_prefer(request.header("Prefer"))
        record_id, key_values = self.resolve_key(entity, key)
        payload = _body(request, entity)
        if_match = request.header("If-Match")
        if_none_match = request.header("If-None-Match")
        with self.records.atomic():
            row = self.find(entity, record_id, key_values)
            if if_match:
                if row is None:
                    raise errors.not_found(entity.logical_name, record_id or key)
                if not etag_matches(if_match, row.version):
                    raise errors.version_mismatch()
                result = WriteResult(self.records.update(entity, row, payload), created=False)
            elif if_none_match and if_none_match.strip() == "*":
                if row is not None:
                    raise errors.already_exists()
                result = WriteResult(self.records.create(entity, payload, record_id, key_values), created=True)
            else:
                result = self.records.upsert(entity, row, payload, record_id, key_values)
        entity_key = None if record_id is not None else key
        return self._written(
            request, entity, result.row, prefer, result.created, key=entity_key if not result.created else None
        )

    def delete_row(self, request: Request, entity_set: str, key: str) -> Response:
        """``DELETE leads(<key>)`` (with optional ``If-Match``)."""
        entity = _entity(entity_set)
        record_id, key_values = self.resolve_key(entity, key)
        if_match = request.header("If-Match")
        with self.records.atomic():
            row = self.find(entity, record_id, key_values)
            if row is None:
                raise errors.not_found(entity.logical_name, record_id or key)
            if if_match and not etag_matches(if_match, row.version):
                raise errors.version_mismatch()
            self.records.delete(entity, row.id)
        return no_content()

    def bulk_action(self, request: Request, entity_set: str, action: str) -> Response:
        """``CreateMultiple``/``UpdateMultiple``/``UpsertMultiple``: all-or-nothing over ``Targets``."""
        entity = _entity(entity_set)
        payload = _body(request, entity)
        targets = payload.get("Targets") if isinstance(payload, dict) else None
        if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
            raise errors.bad_request(
                errors.INVALID_ARGUMENT, f"{action} needs a non-empty 'Targets' array of entity objects."
            )
        for target in targets:
            declared = str(target.get("@odata.type", f"Microsoft.Dynamics.CRM.{entity.logical_name}")).lstrip("#")
            if declared != f"Microsoft.Dynamics.CRM.{entity.logical_name}":
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    f"{action} on {entity.entity_set}: every target "
                    f"must be a Microsoft.Dynamics.CRM.{entity.logical_name} (got {declared}).",
                )
        context = f"{api_base(request)}/$metadata#Microsoft.Dynamics.CRM.{action}Response"
        with self.records.atomic():
            if action == "CreateMultiple":
                ids = [self.records.create(entity, target).id for target in targets]
                return odata_json({"@odata.context": context, "Ids": ids})
            if action == "UpdateMultiple":
                for target in targets:
                    existing = self.records.require(entity, str(target.get(entity.primary_id) or ""))
                    self.records.update(entity, existing, target)
                return no_content()
            results = []
            for target in targets:
                record_id, key_values = self._upsert_target(entity, target)
                row = self.find(entity, record_id, key_values)
                body = {k: v for k, v in target.items() if k != entity.primary_id or row is None}
                result = self.records.upsert(entity, row, body, record_id, key_values)
                results.append(
                    {
                        "RecordCreated": result.created,
                        "Target": {
                            "@odata.type": f"#Microsoft.Dynamics.CRM.{entity.logical_name}",
                            entity.primary_id: result.row.id,
                        },
                    }
                )
            return odata_json({"@odata.context": context, "Results": results})

    def _upsert_target(self, entity: Entity, target: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        odata_id = target.get("@odata.id")
        if isinstance(odata_id, str):
            inner = odata_id.rsplit("/", 1)[-1]
            if not inner.startswith(f"{entity.entity_set}(") or not inner.endswith(")"):
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    f"UpsertMultiple: '@odata.id' {odata_id!r} does not address {entity.entity_set}.",
                )
            return self.resolve_key(entity, inner[len(entity.entity_set) + 1 : -1])
        if target.get(entity.primary_id):
            return str(target[entity.primary_id]).lower(), None
        raise errors.bad_request(
            errors.INVALID_ARGUMENT, "UpsertMultiple: each target needs '@odata.id' or its primary key."
        )

    def qualify_lead(self, request: Request, key: str) -> Response:
        """``QualifyLead``: the lead becomes Qualified and the created records come back."""
        entity = ENTITIES["lead"]
        record_id, key_values = self.resolve_key(entity, key)
        row = self.find(entity, record_id, key_values)
        if row is None:
            raise errors.not_found("lead", record_id or key)
        created = self.records.qualify_lead(row.id, _body(request, entity))
        return odata_json({"@odata.context": f"{api_base(request)}/$metadata#crmbaseentity", "value": created})
