"""What both sandbox servers share: context, admin endpoints, counters, faults, in-flight tracking.

Each system's app (Marketo, Dataverse) subclasses :class:`SandboxApp`, registers its API routes and
answers the system-specific admin operations (edit, delete, record) and error shapes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.faults import FaultInjector, FaultSpecError
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.stats import Stats
from mktdyn_sandbox.web import Request, RequestError, Response, Route, Router


@dataclass(frozen=True)
class Credentials:
    """The credentials a sandbox accepts; generated once per DIR and kept there."""

    marketo_client_id: str
    marketo_client_secret: str
    dynamics_tenant_id: str
    dynamics_client_id: str
    dynamics_client_secret: str
    dynamics_username: str
    dynamics_password: str


@dataclass
class SandboxContext:
    """State shared by both servers of one sandbox."""

    directory: Path
    clock: SandboxClock
    faults: FaultInjector
    credentials: Credentials
    limits: bool = True
    export_delay: float = 1.0
    seed: int = 1


class AdminError(Exception):
    """A bad admin request; answered as 400 with the message."""


class SandboxApp:
    """Base of a sandbox API server.

    Subclasses set ``system`` ("marketo" or "dynamics"), implement :meth:`register_routes` and the
    ``admin_*`` hooks, and may override :meth:`before_request` to apply auth, limits and the injected
    error codes in the order the real service applies them.
    """

    system: ClassVar[str] = ""
    #: Entities the admin endpoints accept for this system.
    entities: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.stats = Stats()
        self.router = Router()
        self.base_url = ""
        self.settings: dict[str, Any] = self.default_settings()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._register_admin_routes()
        self.register_routes()

    # -- hooks for subclasses -------------------------------------------------------------------
    def default_settings(self) -> dict[str, Any]:
        """Runtime-adjustable behaviour (token lifetime, limits, switches), readable via admin."""
        return {}

    def register_routes(self) -> None:
        """Add the API's routes to ``self.router``."""

    def is_seeded(self) -> bool:
        """Whether the database under DIR already holds seed data."""
        return False

    def seed(self, plan: SeedPlan) -> None:
        """Load the seed plan's records (called once, on a fresh DIR)."""

    def before_request(self, request: Request, route: Route, fault_code: str | None, in_flight: int) -> Response | None:
        """Auth, rate limits and injected error codes; a response here short-circuits the handler."""
        return None

    def not_found(self, request: Request) -> Response:
        """The system's answer to an unknown path."""
        return Response.text("Not Found", status=404)

    def method_not_allowed(self, request: Request) -> Response:
        """The system's answer to a known path with the wrong method."""
        return Response.text("Method Not Allowed", status=405)

    def admin_edit(self, entity: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Apply an edit as a user in the product's UI would, returning the stored record."""
        raise AdminError(f"{self.system} has no entity {entity!r}")

    def admin_delete(self, entity: str, record_id: str) -> dict[str, Any]:
        """Delete as a user in the product's UI would."""
        raise AdminError(f"{self.system} has no entity {entity!r}")

    def admin_record(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The stored record, or None when there is none."""
        raise AdminError(f"{self.system} has no entity {entity!r}")

    def close(self) -> None:
        """Release resources (database connections)."""

    # -- request handling -----------------------------------------------------------------------
    @contextmanager
    def _track_in_flight(self) -> Iterator[int]:
        with self._in_flight_lock:
            self._in_flight += 1
            current = self._in_flight
        try:
            yield current
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def handle(self, request: Request) -> Response:
        """Route one request through faults, limits and the handler."""
        route, arguments, path_known = self.router.match(request.method, request.path)
        if route is None:
            return self.method_not_allowed(request) if path_known else self.not_found(request)
        if route.kind == "admin":
            return route.handler(request, **arguments)  # never counted: the counters measure API use
        self.stats.count_request(route.name, route.kind)
        draw = self.context.faults.draw(self.system)
        with self._track_in_flight() as in_flight:
            if draw.delay_seconds:
                time.sleep(draw.delay_seconds)
            if draw.reset:
                self.stats.count_rejected("reset")
                return Response.connection_reset()
            early = self.before_request(request, route, draw.code, in_flight)
            if early is not None:
                return early
            try:
                return route.handler(request, **arguments)
            except RequestError as exc:
                return exc.response

    # -- admin endpoints ------------------------------------------------------------------------
    def _register_admin_routes(self) -> None:
        add = self.router.add
        add("GET", r"/_sandbox/stats", self._admin_stats, "admin stats", "admin")
        add("POST", r"/_sandbox/stats/reset", self._admin_stats_reset, "admin stats reset", "admin")
        add("GET", r"/_sandbox/faults", self._admin_faults_get, "admin faults", "admin")
        add("POST", r"/_sandbox/faults", self._admin_faults, "admin faults", "admin")
        add("POST", r"/_sandbox/edit", self._admin_edit, "admin edit", "admin")
        add("POST", r"/_sandbox/delete", self._admin_delete, "admin delete", "admin")
        add("GET", r"/_sandbox/record", self._admin_record, "admin record", "admin")
        add("GET", r"/_sandbox/config", self._admin_config_get, "admin config", "admin")
        add("POST", r"/_sandbox/config", self._admin_config, "admin config", "admin")
        add("POST", r"/_sandbox/clock", self._admin_clock, "admin clock", "admin")
        add("GET", r"/_sandbox/health", self._admin_health, "admin health", "admin")

    @staticmethod
    def _admin_json(request: Request) -> dict[str, Any]:
        try:
            payload = json.loads(request.body.decode("utf-8") or "{}")
        except ValueError as exc:
            raise AdminError(f"malformed JSON body: {exc}") from exc
        if not isinstance(payload, dict):
            raise AdminError("the body must be a JSON object")
        return payload

    def _guard(self, request: Request, action: Any) -> Response:
        try:
            return Response.json(action())
        except AdminError as exc:
            return Response.json({"error": str(exc)}, status=400)
        except KeyError as exc:
            return Response.json({"error": f"missing key {exc}"}, status=400)

    def _admin_health(self, request: Request) -> Response:
        return Response.json({"system": self.system, "ok": True, "time": self.context.clock.time()})

    def _admin_stats(self, request: Request) -> Response:
        return Response.json({"system": self.system, **self.stats.snapshot()})

    def _admin_stats_reset(self, request: Request) -> Response:
        self.stats.reset()
        return Response.json({"ok": True})

    def _admin_faults_get(self, request: Request) -> Response:
        return Response.json({"spec": self.context.faults.spec})

    def _admin_faults(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            if request.content_type == "application/json":
                spec = str(self._admin_json(request).get("spec", ""))
            else:
                spec = request.body.decode("utf-8").strip()
            try:
                self.context.faults.configure(spec)
            except FaultSpecError as exc:
                raise AdminError(str(exc)) from exc
            return {"spec": spec}

        return self._guard(request, apply)

    def _entity_and_id(self, payload: dict[str, Any]) -> tuple[str, str]:
        entity = str(payload.get("entity", ""))
        if entity not in self.entities:
            raise AdminError(f"{self.system} admin: entity must be one of {', '.join(self.entities)}")
        if payload.get("id") in (None, ""):
            raise AdminError("admin: id is required")
        return entity, str(payload["id"])

    def _admin_edit(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            payload = self._admin_json(request)
            entity, record_id = self._entity_and_id(payload)
            fields = payload.get("fields")
            if not isinstance(fields, dict):
                raise AdminError("admin edit: fields must be an object")
            return self.admin_edit(entity, record_id, fields)

        return self._guard(request, apply)

    def _admin_delete(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            entity, record_id = self._entity_and_id(self._admin_json(request))
            return self.admin_delete(entity, record_id)

        return self._guard(request, apply)

    def _admin_record(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            entity, record_id = self._entity_and_id({"entity": request.param("entity"), "id": request.param("id")})
            record = self.admin_record(entity, record_id)
            if record is None:
                raise AdminError(f"no {entity} {record_id}")
            return record

        return self._guard(request, apply)

    def _admin_config_get(self, request: Request) -> Response:
        return Response.json(self.settings)

    def _admin_config(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            payload = self._admin_json(request)
            unknown = sorted(set(payload) - set(self.settings))
            if unknown:
                raise AdminError(
                    f"unknown {self.system} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(self.settings))}"
                )
            self.settings.update(payload)
            return self.settings

        return self._guard(request, apply)

    def _admin_clock(self, request: Request) -> Response:
        def apply() -> dict[str, Any]:
            seconds = float(self._admin_json(request).get("advance_seconds", 0))
            try:
                offset = self.context.clock.advance(seconds)
            except ValueError as exc:
                raise AdminError(str(exc)) from exc
            return {"offset_seconds": offset, "time": self.context.clock.time()}

        return self._guard(request, apply)
