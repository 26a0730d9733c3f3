"""The Dataverse half of the sandbox: the Web API and its Entra authority on one HTTPS port.

This module only wires things together and applies what the real service applies before a handler
runs, in its order: the bearer check (401), service protection (429), then the injected faults. The
behaviour itself lives in the small modules next to it (authority, metadata_api, entity_api, batch,
records, store, query, odata_filter, validation).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, ClassVar

from mktdyn_sandbox.app import AdminError, SandboxApp
from mktdyn_sandbox.dataverse import errors, query
from mktdyn_sandbox.dataverse.authority import Authority, Principal, TokenError
from mktdyn_sandbox.dataverse.batch import BatchExecutor
from mktdyn_sandbox.dataverse.entity_api import EntityApi
from mktdyn_sandbox.dataverse.limits import ServiceProtection
from mktdyn_sandbox.dataverse.metadata import DEFAULT_OWNER_ID, ENTITIES, Entity
from mktdyn_sandbox.dataverse.metadata_api import MetadataApi
from mktdyn_sandbox.dataverse.odata import API_PATH
from mktdyn_sandbox.dataverse.records import RecordService, full_name
from mktdyn_sandbox.dataverse.store import Store, StoredRow
from mktdyn_sandbox.dataverse.validation import LOOKUP_TARGET, WriteTarget, validate
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.tls import ensure_client_certificate
from mktdyn_sandbox.web import Request, Response, Route

_ROW_PATH = re.compile(rf"^{re.escape(API_PATH)}/(?P<set>leads|contacts)\((?P<key>.*)\)$")


class DataverseApp(SandboxApp):
    """Dataverse's Web API and its Entra-style authority."""

    system: ClassVar[str] = "dynamics"
    entities: ClassVar[tuple[str, ...]] = ("lead", "contact")

    def __init__(self, context: Any) -> None:
        self.store = Store(context.directory / "dynamics.db")
        key = self.store.db.get_meta("token_signing_key")
        if key is None:
            key = secrets.token_hex(32)
            self.store.db.set_meta("token_signing_key", key)
        self._signing_key = bytes.fromhex(key)
        self.protection = ServiceProtection(context.clock)
        super().__init__(context)

    # -- hooks ----------------------------------------------------------------------------------------------
    def default_settings(self) -> dict[str, Any]:
        """Runtime-adjustable behaviour; tests shrink the limits and switch change tracking off per table."""
        return {
            "token_ttl": 3599,
            "requests_per_window": 6000,
            "batch_operations_count": False,
            "window_seconds": 300,
            "concurrency_limit": 52,
            "change_tracking": {"lead": True, "contact": True},
            "delta_token_ttl_days": 7,
            "max_page_size": query.MAX_PAGE_SIZE,
            "alternate_keys": {"lead": [], "contact": []},
        }

    def register_routes(self) -> None:
        """Authority, metadata, entity sets and ``$batch`` share one router (and one port)."""
        self.records = RecordService(self.store, self.context.clock, self.stats)
        self.authority = Authority(
            self.context.credentials,
            self.context.clock,
            self._signing_key,
            lambda: self.settings,
            certificates=[ensure_client_certificate(self.context.directory).certificate()],
        )
        self.authority.register(self.router)
        self.entity_api = EntityApi(self.records, lambda: self.settings)
        self.metadata_api = MetadataApi(self.entity_api.tracking_enabled, self.entity_api.alternate_keys)
        self.metadata_api.register(self.router)
        self.entity_api.register(self.router)
        self.batch = BatchExecutor(self.records, self.dispatch_inner)
        self.router.add("POST", rf"{API_PATH}/\$batch", self.batch.execute, "dataverse $batch", "write")

    def is_seeded(self) -> bool:
        """Whether ``dynamics.db`` already holds the seed."""
        return self.store.is_seeded()

    def seed(self, plan: SeedPlan) -> None:
        """Load the plan's leads and contacts in chunks (bounded memory at any scale)."""

        def rows() -> Any:
            for seed_row in plan.dynamics_rows():
                data = dict(seed_row.fields)
                created, modified = data.pop("createdon"), data.pop("modifiedon")
                data["fullname"] = full_name(data)
                data["_ownerid_value"] = DEFAULT_OWNER_ID
                data[f"_ownerid_value{LOOKUP_TARGET}"] = "systemuser"
                yield seed_row.entity, seed_row.row_id, data, created, modified

        self.store.bulk_insert(rows())
        self.store.mark_seeded()

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    # -- before each request ----------------------------------------------------------------------------------
    def _unauthorized(self, request: Request, message: str) -> Response:
        return errors.error_response(401, "", message, self.authority.challenge(request))

    def _principal(self, request: Request) -> Principal | Response:
        try:
            return self.authority.principal(request)
        except TokenError as exc:
            return self._unauthorized(request, str(exc))

    def before_request(self, request: Request, route: Route, fault_code: str | None, in_flight: int) -> Response | None:
        """Bearer check, service protection, then the injected Dataverse faults."""
        if route.kind == "auth":
            return self._authority_fault(request, fault_code)
        principal = self._principal(request)
        if isinstance(principal, Response):
            self.stats.count_rejected("401")
            return principal
        try:
            if self.context.limits:
                self.protection.check_concurrency(in_flight, int(self.settings["concurrency_limit"]))
                if not (route.name.endswith("$batch") and self.settings["batch_operations_count"]):
                    self.count_operation(principal)  # (in the strict model the batch's operations count instead)
            if fault_code is not None:
                return self._fault(request, fault_code)
        except errors.DataverseError as exc:
            self.stats.count_rejected(str(exc.status))
            return exc.response
        return None

    def count_operation(self, principal: Principal) -> None:
        """One request against the user's service-protection window (429 when it is full)."""
        if self.context.limits:
            self.protection.hit(
                principal.subject, int(self.settings["requests_per_window"]), float(self.settings["window_seconds"])
            )

    def _authority_fault(self, request: Request, fault_code: str | None) -> Response | None:
        if fault_code not in ("500", "503"):
            return None
        self.stats.count_rejected(fault_code)
        status = int(fault_code)
        return Response.json(
            {
                "error": "temporarily_unavailable" if status == 503 else "server_error",
                "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
                "error_codes": [90033],
            },
            status=status,
            headers={"Retry-After": "1"} if status == 503 else None,
        )

    def _fault(self, request: Request, code: str) -> Response | None:
        """An injected fault; 412 only where a real concurrent edit could cause one."""
        if code == "401":
            self.stats.count_rejected("401")
            return self._unauthorized(request, "The access token has expired. Acquire a new token and retry.")
        if code == "412":
            return self._concurrent_edit(request)
        self.stats.count_rejected(code)
        if code == "429":
            return errors.error_response(
                429,
                errors.REQUEST_LIMIT,
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                {"Retry-After": "1"},
            )
        if code == "503":
            return errors.error_response(
                503, "", "The service is temporarily unavailable. Please try again later.", {"Retry-After": "1"}
            )
        return errors.error_response(500, errors.UNEXPECTED, "An unexpected error occurred.")

    def _concurrent_edit(self, request: Request) -> Response | None:
        """Someone else saved the row first: bump its version for real, then answer 412."""
        if_match = (request.header("If-Match") or "").strip()
        match = _ROW_PATH.match(request.path)
        if request.method not in ("PATCH", "DELETE") or not if_match or if_match == "*" or match is None:
            return None
        entity = next(e for e in ENTITIES.values() if e.entity_set == match["set"])
        try:
            record_id, _ = self.entity_api.resolve_key(entity, match["key"])
        except errors.DataverseError:
            return None
        if record_id is None or self.records.touch(entity, record_id) is None:
            return None
        self.stats.count_rejected("412")
        return errors.version_mismatch().response

    # -- routing ------------------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Every Web API answer carries ``OData-Version`` (errors and 204s included)."""
        response = super().handle(request)
        if request.path.startswith("/api/data/"):
            response.headers.setdefault("OData-Version", "4.0")
        return response

    def not_found(self, request: Request) -> Response:
        """Unknown Web API segments get the OData error body."""
        if request.path.startswith("/api/data/"):
            segment = request.path.removeprefix(API_PATH).strip("/").split("/")[0]
            return errors.error_response(
                404, errors.UNKNOWN_PROPERTY, f"Resource not found for the segment '{segment}'."
            )
        return super().not_found(request)

    def method_not_allowed(self, request: Request) -> Response:
        """A known Web API path with the wrong method."""
        if request.path.startswith("/api/data/"):
            return errors.error_response(
                405, "0x80060888", f"The HTTP method '{request.method}' is not allowed for this resource."
            )
        return super().method_not_allowed(request)

    def dispatch_inner(self, request: Request) -> Response:
        """Run one ``$batch`` operation through the normal handlers (auth was checked on the batch)."""
        route, arguments, path_known = self.router.match(request.method, request.path)
        if route is None or route.kind in ("admin", "auth") or route.name.endswith("$batch"):
            return self.method_not_allowed(request) if path_known else self.not_found(request)
        principal = self._principal(request)
        if isinstance(principal, Response):
            return principal
        if self.settings["batch_operations_count"]:
            self.count_operation(principal)
        self.stats.count_event("batch_operations")
        # Each operation of a $batch is its own request to Dataverse: a concurrent edit can beat any one
        # of them, so an injected 412 applies per operation (the other codes apply to the whole $batch).
        if self.context.faults.draw(self.system).code == "412":
            conflict = self._concurrent_edit(request)
            if conflict is not None:
                return conflict
        response = route.handler(request, **arguments)
        response.headers.setdefault("OData-Version", "4.0")
        return response

    # -- admin ----------------------------------------------------------------------------------------------------
    def _entity(self, name: str) -> Entity:
        if name not in ENTITIES:
            raise AdminError(f"dynamics admin: entity must be one of {', '.join(ENTITIES)}")
        return ENTITIES[name]

    def admin_edit(self, entity: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """An edit in the model-driven UI: validated like the API, versioned, seen by change tracking."""
        table = self._entity(entity)
        row = self.store.get(entity, record_id)
        if row is None:
            raise AdminError(f"no {entity} {record_id}")
        try:
            with self.records.atomic():
                updated = self.store.replace(entity, row, self._ui_changes(table, row, fields), self.records.now())
        except errors.DataverseError as exc:
            raise AdminError(f"{exc.code}: {exc.message}") from exc
        return query.render_row(table, updated, None, query.Prefer())

    def _ui_changes(self, table: Entity, row: StoredRow, fields: dict[str, Any]) -> dict[str, Any]:
        changes = validate(WriteTarget(table, "update", row.id, row.data), fields, self.records.exists)
        data = {**row.data, **changes}
        data["fullname"] = full_name(data)
        return data

    def admin_delete(self, entity: str, record_id: str) -> dict[str, Any]:
        """A delete in the UI (recorded for change tracking, not counted as an API write)."""
        self._entity(entity)
        if not self.store.delete(entity, record_id, self.records.now()):
            raise AdminError(f"no {entity} {record_id}")
        return {"deleted": True, "entity": entity, "id": record_id.lower()}

    def admin_record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The stored row as the API reads it, ``versionnumber`` and ``@odata.etag`` included."""
        table = self._entity(entity)
        row = self.store.get(entity, record_id)
        return None if row is None else query.render_row(table, row, None, query.Prefer())
