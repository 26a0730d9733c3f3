"""The Marketo REST API half of the sandbox: routes, identity, auth, limits, faults and admin hooks.

Request order follows the real service: URI/body size checks at the gateway (414/413), ``_method=GET``
tunnelling, identity (free of limits), then per call: injected faults, the access token (601/602),
quota (607), rate (606) and concurrency (615). Calls are metered when admitted and refunded when they
fail, so neither refused nor failed calls count against the window or the daily quota.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from mktdyn_sandbox.app import AdminError, SandboxApp
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.activities import ActivityLog
from mktdyn_sandbox.marketo.activity_types import CustomTypes
from mktdyn_sandbox.marketo.api_activities import ActivitiesApi
from mktdyn_sandbox.marketo.api_bulk import BulkApi
from mktdyn_sandbox.marketo.api_leads import LeadsApi
from mktdyn_sandbox.marketo.api_misc import MiscApi
from mktdyn_sandbox.marketo.auth import SCOPE, TokenIssuer
from mktdyn_sandbox.marketo.envelope import MESSAGES, failure
from mktdyn_sandbox.marketo.exports import ExportJobs
from mktdyn_sandbox.marketo.fields import CATALOGUE
from mktdyn_sandbox.marketo.limits import CallLimits, Ticket
from mktdyn_sandbox.marketo.persons import EditError, PersonService
from mktdyn_sandbox.marketo.store import PersonStore
from mktdyn_sandbox.marketo.webhooks import DEFAULT_TIMEOUT, WebhookEngine, WebhookError
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.web import Request, RequestError, Response, Route

MAX_URI_BYTES = 8 * 1024
MAX_BODY_BYTES = 1024 * 1024
#: Injected fault codes answered as plain request-level failures.
ENVELOPE_FAULTS = ("606", "607", "611", "615")
#: Routes on which an injected 1029 applies (it is a bulk-export code).
EXPORT_QUEUE_ROUTES = ("bulk leads export create", "bulk leads export enqueue")
CHANGED_AT_KEY = "_sandbox_changed_at"


class MarketoApp(SandboxApp):
    """Marketo's identity service and REST API (lead database, activities, bulk export, assets)."""

    system: ClassVar[str] = "marketo"
    entities: ClassVar[tuple[str, ...]] = ("person",)

    db: Database
    store: PersonStore
    log: ActivityLog
    persons: PersonService
    exports: ExportJobs
    tokens: TokenIssuer
    limits: CallLimits
    webhooks: WebhookEngine

    def default_settings(self) -> dict[str, Any]:
        """Every knob tests and demos turn (see ``/_sandbox/config``)."""
        return {
            "token_ttl": 3600,
            "limits": self.context.limits,
            "rate_limit_calls": 100,
            "rate_limit_window": 20,
            "concurrency_limit": 10,
            "daily_quota": 50000,
            "updated_at_filter": True,
            "reject_legacy_token": False,
            "export_status_interval": 0,
            "export_file_noise": False,
            "export_daily_quota_mb": 500,
            "export_max_processing": 2,
            "export_max_queued": 10,
            # Fields leads.json silently ignores on create and update although describe calls them writable.
            "ignored_on_write": [],
            "webhook_timeout": DEFAULT_TIMEOUT,
            "webhook_timeouts": {},
        }

    # -- wiring -------------------------------------------------------------------------------------
    def register_routes(self) -> None:
        """Open the database, build the services and register every route."""
        context = self.context
        self._local = threading.local()
        self.db = Database(context.directory / "marketo.db")
        self.store = PersonStore(self.db)
        self.log = ActivityLog(self.db)
        self.persons = PersonService(
            self.db,
            self.store,
            self.log,
            self.stats,
            context.clock,
            lambda: frozenset(self.settings.get("ignored_on_write") or ()),
        )
        self.tokens = TokenIssuer()
        self.limits = CallLimits(lambda: self.settings)
        self.exports = ExportJobs(
            self.db,
            self.store,
            context.clock,
            context.directory,
            lambda: self.settings,
            context.export_delay,
            self.stats,
        )
        self.webhooks = WebhookEngine(
            self.db,
            self.store,
            self.persons,
            self.log,
            self.stats,
            context.clock,
            lambda: self.settings,
            context.directory / "ca.pem",
        )
        self.router.add("GET", r"/_sandbox/webhooks", self._admin_webhooks, "admin webhooks", "admin")
        self.router.add("POST", r"/_sandbox/webhooks", self._admin_webhook_define, "admin webhooks", "admin")
        self.router.add("POST", r"/_sandbox/campaigns/trigger", self._admin_trigger, "admin trigger", "admin")
        custom_types = CustomTypes(self.db, context.clock)
        leads = LeadsApi(self.store, self.persons, context.clock)
        activities = ActivitiesApi(self.db, self.log, custom_types, self.store, context.clock, self.stats)
        bulk = BulkApi(self.exports, context.clock)
        misc = MiscApi(self.store, self.limits, context.clock, context.clock.time())

        add = self._add
        self.router.add("GET", r"/identity/oauth/token", self._token, "identity token", "auth")
        self.router.add("POST", r"/identity/oauth/token", self._token, "identity token", "auth")
        v1 = "/rest/v1"
        add("GET", rf"{v1}/leads/describe\.json", leads.describe, "leads describe", "metadata")
        add("GET", rf"{v1}/leads/describe2\.json", leads.describe2, "leads describe2", "metadata")
        add("GET", rf"{v1}/leads\.json", leads.by_filter, "leads by filter", "read")
        add("POST", rf"{v1}/leads\.json", leads.sync, "leads sync", "write")
        add("DELETE", rf"{v1}/leads\.json", leads.delete, "leads delete", "write")
        add("POST", rf"{v1}/leads/delete\.json", leads.delete, "leads delete", "write")
        add("GET", rf"{v1}/lead/(?P<lead_id>\d+)\.json", leads.by_id, "lead by id", "read")
        add("GET", rf"{v1}/lists?/(?P<list_id>\d+)/leads\.json", leads.list_members, "list leads", "read")
        add("GET", rf"{v1}/activities/pagingtoken\.json", activities.paging_token, "activities paging token", "read")
        add("GET", rf"{v1}/activities/leadchanges\.json", activities.lead_changes, "activities lead changes", "read")
        add("GET", rf"{v1}/activities/deletedleads\.json", activities.deleted_leads, "activities deleted", "read")
        add("GET", rf"{v1}/activities\.json", activities.activities, "activities", "read")
        add("GET", rf"{v1}/activities/types\.json", activities.activity_types, "activity types", "metadata")
        ext = rf"{v1}/activities/external"
        add("GET", rf"{ext}/types\.json", activities.custom_types, "custom activity types", "metadata")
        add("POST", rf"{ext}/type\.json", activities.custom_type_create, "custom activity type create", "write")
        name = r"(?P<api_name>[A-Za-z0-9_]+)"
        add("POST", rf"{ext}/type/{name}\.json", activities.custom_type_update, "custom activity type update", "write")
        add(
            "GET",
            rf"{ext}/type/{name}/describe\.json",
            activities.custom_type_describe,
            "custom activity type describe",
            "metadata",
        )
        add(
            "POST",
            rf"{ext}/type/{name}/approve\.json",
            activities.custom_type_approve,
            "custom activity type approve",
            "write",
        )
        add(
            "POST",
            rf"{ext}/type/{name}/discardDraft\.json",
            activities.custom_type_discard,
            "custom activity type discard draft",
            "write",
        )
        add(
            "POST",
            rf"{ext}/type/{name}/delete\.json",
            activities.custom_type_delete,
            "custom activity type delete",
            "write",
        )
        add(
            "POST",
            rf"{ext}/type/{name}/attributes/(?P<operation>create|update|delete)\.json",
            activities.custom_type_attributes,
            "custom activity type attributes",
            "write",
        )
        add("POST", rf"{ext}\.json", activities.add_custom, "custom activities add", "write")
        add("GET", rf"{v1}/stats/usage\.json", misc.usage, "stats usage", "read")
        add("GET", rf"{v1}/stats/usage/last7days\.json", misc.usage_7_days, "stats usage 7 days", "read")
        add("GET", rf"{v1}/stats/errors\.json", misc.errors, "stats errors", "read")
        add("GET", rf"{v1}/stats/errors/last7days\.json", misc.errors_7_days, "stats errors 7 days", "read")
        add("GET", rf"{v1}/lists\.json", misc.lists, "lists", "read")
        add("GET", rf"{v1}/campaigns\.json", misc.campaigns, "campaigns", "read")
        add("GET", r"/rest/asset/v1/programs\.json", misc.programs, "asset programs", "read")
        bulk_base = r"/bulk/v1/leads/export"
        job = r"(?P<export_id>[0-9a-fA-F-]+)"
        add("POST", rf"{bulk_base}/create\.json", bulk.create, "bulk leads export create", "read")
        add("POST", rf"{bulk_base}/{job}/enqueue\.json", bulk.enqueue, "bulk leads export enqueue", "read")
        add("GET", rf"{bulk_base}/{job}/status\.json", bulk.status, "bulk leads export status", "read")
        add("GET", rf"{bulk_base}/{job}/file\.json", bulk.file, "bulk leads export file", "read")
        add("POST", rf"{bulk_base}/{job}/cancel\.json", bulk.cancel, "bulk leads export cancel", "read")
        add("GET", rf"{bulk_base}\.json", bulk.listing, "bulk leads export list", "read")

    def _add(self, method: str, pattern: str, handler: Callable[..., Response], name: str, kind: str) -> None:
        """Register an API route whose failures refund the call it was metered as."""

        def metered(request: Request, **arguments: str) -> Response:
            try:
                return handler(request, **arguments)
            except RequestError:
                ticket: Ticket | None = getattr(self._local, "ticket", None)
                if ticket is not None:
                    self.limits.refund(ticket)
                raise

        self.router.add(method, pattern, metered, name, kind)

    # -- seeding and lifecycle ------------------------------------------------------------------------
    def is_seeded(self) -> bool:
        """Whether ``marketo.db`` already holds the seed."""
        return self.db.get_meta("seeded") == "1"

    def seed(self, plan: SeedPlan) -> None:
        """Load the plan's persons (ids 1..N), their New Lead activities and the static lists."""
        self.persons.seed(plan)
        self.db.set_meta("seeded", "1")

    def close(self) -> None:
        """Stop export workers and close the database."""
        self.exports.close()
        self.db.close()

    # -- gateway --------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Size limits and ``_method=GET`` tunnelling (query string or form body), then route."""
        if not request.path.startswith("/_sandbox/"):
            if len(request.target.encode("utf-8")) > MAX_URI_BYTES:
                return Response.text("Request-URI Too Long", status=414)
            if len(request.body) > MAX_BODY_BYTES:
                return Response.text("Request Entity Too Large", status=413)
            if request.method == "POST" and (request.param("_method") or "").upper() == "GET":
                request.method = "GET"
        return super().handle(request)

    def not_found(self, request: Request) -> Response:
        """610 envelope for unknown API paths."""
        now = self.context.clock.time()
        if request.path.startswith(("/rest/", "/bulk/")):
            self.limits.record_error(now, "610")
            return failure(now, "610")
        return Response.text("Not Found", status=404)

    def method_not_allowed(self, request: Request) -> Response:
        """605 envelope for a known path with the wrong method."""
        now = self.context.clock.time()
        self.limits.record_error(now, "605")
        return failure(now, "605")

    def _token(self, request: Request) -> Response:
        """``/identity/oauth/token`` (GET or POST, query or form body): the same token until it expires."""
        credentials = self.context.credentials
        grant = request.param("grant_type")
        if grant != "client_credentials":
            return Response.json(
                {"error": "unsupported_grant_type", "error_description": f"Unsupported grant type: {grant}"}, status=400
            )
        client_id = request.param("client_id")
        if client_id != credentials.marketo_client_id:
            return Response.json(
                {"error": "invalid_client", "error_description": f"No client with requested id: {client_id}"},
                status=401,
            )
        if request.param("client_secret") != credentials.marketo_client_secret:
            return Response.json({"error": "invalid_client", "error_description": "Bad client credentials"}, status=401)
        now = self.context.clock.time()
        token, fresh = self.tokens.issue(client_id, now, float(self.settings["token_ttl"]))
        if fresh:
            self.stats.count_event("tokens_issued")
        payload = {
            "access_token": token.value,
            "token_type": "bearer",
            "expires_in": max(0, int(token.expires_at - now)),
            "scope": SCOPE,
        }
        return Response.json(payload, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _access_token(self, request: Request) -> str | None:
        header = request.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if self.settings["reject_legacy_token"]:
            return None
        return request.param("access_token")

    def before_request(self, request: Request, route: Route, fault_code: str | None, in_flight: int) -> Response | None:
        """Faults, token, quota, rate and concurrency, in that order; admit and meter the call."""
        self._local.ticket = None
        if route.kind == "auth":
            return None  # identity calls are free and answer in their own shape
        now = self.context.clock.time()
        code, message = None, None
        if fault_code in ("601", "602") or fault_code in ENVELOPE_FAULTS:
            code = fault_code
            if fault_code == "606":
                message = (
                    f"Max rate limit '{self.settings['rate_limit_calls']}' exceeded with in "
                    f"'{self.settings['rate_limit_window']}' secs"
                )
            elif fault_code == "615":
                message = f"Concurrent access limit '{self.settings['concurrency_limit']}' reached"
        elif fault_code == "1029" and route.name in EXPORT_QUEUE_ROUTES:
            code, message = "1029", "Too many jobs in queue"
        else:
            code = self.tokens.check(self._access_token(request), now)
            if code is None:
                ticket, refusal = self.limits.admit(now, in_flight)
                if refusal is not None:
                    code, message = refusal
                self._local.ticket = ticket
        if code is None:
            return None
        self.stats.count_rejected(code)
        self.limits.record_error(now, code)
        return failure(now, code, message or MESSAGES.get(code))

    # -- webhooks (admin) -------------------------------------------------------------------------------
    def _admin_webhooks(self, request: Request) -> Response:
        return Response.json({"webhooks": self.webhooks.listing()})

    def _admin_webhook_define(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            try:
                return self.webhooks.define(self._admin_json(request))
            except WebhookError as exc:
                raise AdminError(str(exc)) from exc

        return self._guard(request, apply)

    def _admin_trigger(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            try:
                return self.webhooks.trigger(self._admin_json(request))
            except WebhookError as exc:
                raise AdminError(str(exc)) from exc

        return self._guard(request, apply)

    # -- admin hooks ----------------------------------------------------------------------------------
    @staticmethod
    def _person_id(record_id: str) -> int:
        if not record_id.strip().isdigit():
            raise AdminError(f"marketo person ids are integers, not {record_id!r}")
        return int(record_id)

    def admin_edit(self, entity: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A UI edit: changes the fields, logs Change Data Value activities ("Changed by user")."""
        person_id = self._person_id(record_id)
        try:
            changed = self.persons.ui_edit(person_id, fields)
        except EditError as exc:
            raise AdminError(str(exc)) from exc
        if changed is None:
            raise AdminError(f"no person {record_id}")
        record = self.admin_record(entity, record_id)
        assert record is not None
        return {**record, "_sandbox_changed_fields": changed}

    def admin_delete(self, entity: str, record_id: str) -> dict[str, Any]:
        """A UI delete: removes the person and logs a Delete Lead activity."""
        person = self.persons.ui_delete(self._person_id(record_id))
        if person is None:
            raise AdminError(f"no person {record_id}")
        return {"deleted": True, "id": person["id"]}

    def admin_record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The stored person (every field, nulls included) and the internal any-field change time."""
        person_id = self._person_id(record_id)
        person = self.store.get(person_id)
        changed_ts = self.store.changed_ts(person_id)
        if person is None or changed_ts is None:
            return None
        record = {spec.name: person.get(spec.name) for spec in CATALOGUE}
        record[CHANGED_AT_KEY] = datetime.fromtimestamp(changed_ts, tz=UTC).isoformat(timespec="milliseconds")
        return record
