"""``mktdyn serve``: the HTTP service a Marketo webhook calls (Starlette, served by uvicorn).

Routes:

- ``POST /webhook/sync-person``: "Sync Person to Microsoft" from a trigger campaign's Call Webhook step.
- ``POST /sync/person``: the two-way merge of one person now (what ``mktdyn sync --person`` does).
- ``GET /healthz``: the process answers. ``GET /readyz``: the store is reachable, the worker runs, the queue
  has room (a load balancer stops sending when it is not).

Every POST is authenticated first (the secret header, compared in constant time), then its JSON validated
(a 400 names the field), then committed to the store's queue, and only then waited for: the answer carries the
Dynamics id when the worker finishes within ``serve_answer_wait_seconds``, and is a 202 (queued, processed
anyway) otherwise. A refused request (401, 400, 413, 503) queues nothing. The secret never reaches a log line:
uvicorn's access log shows the method, path and status only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from mktdyn_common.redact import protect_secrets, redact
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from target_mktdyn_merge.core.vocabulary import RequestKind
from target_mktdyn_merge.ops.realtime_worker import Answers, RealtimeWorker
from target_mktdyn_merge.ops.serve_settings import ServeSettings
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.realtime_queue import enqueue, queued_count

#: A webhook payload is a few hundred bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024
#: What a full queue tells the caller to wait before trying again.
RETRY_AFTER_SECONDS = 30
#: Keys a payload may carry besides ``personId`` (Marketo tokens admins commonly add; logged, not used).
OPTIONAL_STRINGS = ("email", "campaignId", "campaignName")

logger = logging.getLogger("mktdyn.serve")


class PayloadError(ValueError):
    """A request body the service refuses; the message names the field."""


@dataclass(frozen=True)
class Accepted:
    """A validated request."""

    person_id: str
    dry_run: bool


def parse_payload(raw: bytes, default_dry_run: bool) -> Accepted:
    """Validate a webhook body: a JSON object with ``personId`` (a positive integer, or its digits as text).

    ``dryRun`` (boolean) asks for a dry run of this request; the target's ``dry_run`` setting makes every request
    one. Marketo's template quotes string tokens, so ``{"personId": {{lead.Id}}}`` arrives as a number.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body: not JSON ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(body, dict):
        raise PayloadError('body: must be a JSON object such as {"personId": 123}')
    if "personId" not in body:
        raise PayloadError("field 'personId': required (the template's {{lead.Id}})")
    person = body["personId"]
    if isinstance(person, str) and person.strip().isdigit():
        person = int(person.strip())
    if isinstance(person, bool) or not isinstance(person, int) or person <= 0:
        raise PayloadError(f"field 'personId': must be a positive integer, got {json.dumps(person)[:40]}")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise PayloadError(f"field 'dryRun': must be true or false, got {json.dumps(dry_run)[:40]}")
    for name in OPTIONAL_STRINGS:
        value = body.get(name)
        if value is not None and not isinstance(value, str | int):
            raise PayloadError(f"field {name!r}: must be a string")
    return Accepted(str(person), dry_run or default_dry_run)


class Service:
    """The routes, bound to one store, its settings and the worker."""

    def __init__(self, store: Store, settings: ServeSettings, worker: RealtimeWorker, answers: Answers) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker
        self.answers = answers

    def authorized(self, request: Request) -> bool:
        """The secret header, compared in constant time (a timing difference reveals nothing of the secret)."""
        given = request.headers.get(self.settings.secret_header, "")
        return hmac.compare_digest(given.encode("utf-8"), self.settings.secret.encode("utf-8"))

    async def sync_person(self, request: Request) -> JSONResponse:
        """``POST /webhook/sync-person``."""
        return await self._handle(request, "sync_person")

    async def full_sync(self, request: Request) -> JSONResponse:
        """``POST /sync/person``."""
        return await self._handle(request, "full_sync")

    async def _handle(self, request: Request, kind: RequestKind) -> JSONResponse:
        if not self.authorized(request):
            return _error(401, f"missing or wrong {self.settings.secret_header} header")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body: larger than {MAX_BODY_BYTES} bytes")
        try:
            accepted = parse_payload(raw, self.settings.merge.dry_run)
        except PayloadError as exc:
            return _error(400, str(exc))
        request_id = await run_in_threadpool(
            enqueue, self.store, kind, accepted.person_id, accepted.dry_run, self.settings.queue_limit
        )
        if request_id is None:
            return _error(
                503,
                f"the queue is full ({self.settings.queue_limit} requests waiting, setting 'serve_queue_limit')",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.worker.wake()
        future = self.answers.future(request_id)
        try:
            status, body = await asyncio.wait_for(future, timeout=self.settings.answer_wait_seconds)
        except TimeoutError:
            self.answers.forget(request_id)
            queued = {"personId": accepted.person_id, "status": "queued", "requestId": request_id}
            return JSONResponse({**queued, "reason": "accepted; processed in the background"}, status_code=202)
        return JSONResponse(body, status_code=status)

    async def healthz(self, request: Request) -> JSONResponse:
        """``GET /healthz``: the process serves."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        """``GET /readyz``: the store answers, the worker runs, the queue has room."""
        try:
            waiting = await run_in_threadpool(queued_count, self.store)
        except Exception as exc:
            return _error(503, f"store: {exc.__class__.__name__}")
        problems = []
        if not self.worker.alive:
            problems.append("the worker is not running")
        if waiting >= self.settings.queue_limit:
            problems.append(f"the queue is full ({waiting})")
        if self.worker.last_error:
            problems.append(f"the last pass failed: {redact(self.worker.last_error)}")
        body = {"status": "ready" if not problems else "not ready", "queued": waiting, "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    logger.warning("refused (%d): %s", status, message)
    return JSONResponse({"status": "refused", "error": message}, status_code=status, headers=headers)


def build_app(store: Store, settings: ServeSettings) -> tuple[Starlette, RealtimeWorker]:
    """The application and its worker (started and stopped with the application)."""
    answers = Answers()
    worker = RealtimeWorker(store, settings.merge, settings.batch_size, answers)
    service = Service(store, settings, worker, answers)
    routes = [
        Route("/webhook/sync-person", service.sync_person, methods=["POST"]),
        Route("/sync/person", service.full_sync, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)

    return Starlette(routes=routes, lifespan=lifespan), worker


def serve(store: Store, settings: ServeSettings, host: str, port: int) -> None:
    """Run the service until SIGTERM/SIGINT (uvicorn's graceful shutdown, then the worker's pass ends)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    protect_secrets(settings.secrets())  # on the handler just made: every line of the service is masked
    app, _ = build_app(store, settings)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, proxy_headers=True)
