"""The worker behind ``mktdyn serve``: drains the store's request queue in batches, under the store's write lock.

One thread. Woken by each accepted request (and every few seconds anyway, so requests left by a crashed
process, or queued by another serve process on the same store, are found), it takes up to
``serve_batch_size`` requests, and for all of them at once reads Marketo (one ``leads.json`` call per 300),
reads Dataverse by email (50 per request), plans with the batch's planner and writes with the batch's writers
(one ``$batch`` for all the creates): a burst of triggers is coalesced into a few calls. The lock is the one
every batch run holds while it merges, so a webhook and a scheduled run never decide on the same person at
once (docs/architecture.md §10). The answers go to the store (``realtime_requests``) and to the HTTP handlers
waiting for them (:class:`Answers`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mktdyn_common.errors import MktdynError
from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.vocabulary import RequestKind
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.lock import write_lock
from target_mktdyn_merge.store.realtime_queue import MAX_ATTEMPTS, QueuedRequest, finish, queued_count, take
from target_mktdyn_merge.sync.engine import check_configuration, read_metadata
from target_mktdyn_merge.sync.merge_settings import MergeSettings
from target_mktdyn_merge.sync.person_sync import PersonAnswer, PersonSync

#: How often the worker looks at the queue without being woken (requests another process queued).
POLL_SECONDS = 2.0
#: After a pass failed (an API or store outage), how long before the next try.
RETRY_SECONDS = 5.0
#: The systems' metadata is read again after this long (a column added in Dynamics is seen without a restart).
METADATA_SECONDS = 600.0
#: How often the queue is looked at while a burst is still arriving (a single trigger waits this twice).
COALESCE_SECONDS = 0.05
#: The longest a burst is let to accumulate before a pass starts anyway.
GATHER_MAX_SECONDS = 1.0

Answer = tuple[int, dict[str, Any]]
"""An HTTP status and the JSON body answering one request."""


class Answers:
    """Answers the worker produced, for the HTTP handlers waiting on them (in the server's event loop).

    The worker may finish a request before its handler starts waiting (a burst, a fast pass): recent answers
    are kept (up to ``keep``), so waiting for one already given returns at once.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._given: OrderedDict[int, Answer] = OrderedDict()
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Answer]]] = {}
        self._keep = keep

    def future(self, request_id: int) -> asyncio.Future[Answer]:
        """A future of the request's answer, bound to the running loop (call from a handler)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        with self._lock:
            given = self._given.get(request_id)
            if given is None:
                self._waiting[request_id] = (loop, future)
        if given is not None:
            future.set_result(given)
        return future

    def forget(self, request_id: int) -> None:
        """The handler stopped waiting (it answered 202)."""
        with self._lock:
            self._waiting.pop(request_id, None)

    def give(self, request_id: int, answer: Answer) -> None:
        """Hand an answer over (from the worker thread)."""
        with self._lock:
            self._given[request_id] = answer
            while len(self._given) > self._keep:
                self._given.popitem(last=False)
            waiting = self._waiting.pop(request_id, None)
        if waiting is not None:
            loop, future = waiting
            loop.call_soon_threadsafe(_resolve, future, answer)


def _resolve(future: asyncio.Future[Answer], answer: Answer) -> None:
    if not future.done():
        future.set_result(answer)


@dataclass
class Clients:
    """The two API clients and the systems' metadata, made once per worker and refreshed now and then."""

    settings: MergeSettings
    marketo: MarketoClient | None = None
    dynamics: DataverseClient | None = None
    metadata: SyncMetadata | None = None
    read_at: float = field(default=0.0)

    def sync(self, store: Store, logger: logging.Logger) -> PersonSync:
        """A :class:`PersonSync` with live clients and current metadata (checked against the settings)."""
        if self.marketo is None or self.dynamics is None:
            self.marketo = MarketoClient(self.settings.marketo_connection())
            self.dynamics = DataverseClient(self.settings.dynamics_connection())
        if self.metadata is None or time.monotonic() - self.read_at > METADATA_SECONDS:
            metadata = read_metadata(self.marketo, self.dynamics)
            check_configuration(self.settings.field_map, self.settings.policy, metadata)
            self.metadata, self.read_at = metadata, time.monotonic()
        return PersonSync(store, self.settings, self.metadata, self.marketo, self.dynamics, logger)

    def close(self) -> None:
        """Close the clients' sessions."""
        for client in (self.marketo, self.dynamics):
            if client is not None:
                client.close()
        self.marketo = self.dynamics = None


def run_once(
    store: Store, person_sync: PersonSync, kind: RequestKind, person_ids: list[str], dry_run: bool
) -> dict[str, PersonAnswer]:
    """One run (in the store's run log, mode ``realtime``) syncing these persons; the caller holds the lock."""
    run_id = store.start_run("realtime")
    try:
        found = person_sync.run(run_id, kind, person_ids, dry_run)
    except BaseException as exc:
        store.finish_run(run_id, "failed", error=str(exc))
        raise
    summary = {"kind": kind, "dry_run": dry_run, "persons": len(person_ids), "outcomes": _counts(found)}
    store.finish_run(run_id, "succeeded", summary)
    return found


def _counts(found: dict[str, PersonAnswer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in found.values():
        counts[answer.outcome] = counts.get(answer.outcome, 0) + 1
    return counts


class RealtimeWorker:
    """The thread draining the queue; :meth:`wake` after each accepted request."""

    def __init__(self, store: Store, settings: MergeSettings, batch_size: int, answers: Answers) -> None:
        self.store = store
        self.settings = settings
        self.batch_size = batch_size
        self.answers = answers
        self.logger = logging.getLogger("mktdyn.serve.worker")
        self.clients = Clients(settings)
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mktdyn-realtime-worker", daemon=True)

    @property
    def alive(self) -> bool:
        """Whether the thread runs (``/readyz``)."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start draining; requests a previous process left queued are taken first."""
        self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        """A request was queued."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the pass in progress (its requests are answered), then stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.clients.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                while not self._stop.is_set() and self._gather() and self.drain_once():
                    pass
                self.last_error = None
            except MktdynError as exc:  # an API, configuration or store error: the requests stay queued
                self.last_error = str(exc)
                self.logger.error("real-time pass failed, retrying in %g s: %s", RETRY_SECONDS, exc)
                self.clients.close()
                self._stop.wait(RETRY_SECONDS)

    def _gather(self) -> bool:
        """Let a burst accumulate: wait while the queue still grows (up to a full batch or GATHER_MAX_SECONDS).

        One ``leads.json`` read and one ``$batch`` serve a whole pass, so a burst taken in passes of 300 costs a
        fraction of the calls of passes of a few; a lone trigger waits only two looks at the queue (0.1 s).
        Returns False when the service is stopping.
        """
        deadline = time.monotonic() + GATHER_MAX_SECONDS
        seen = -1
        while not self._stop.wait(COALESCE_SECONDS):
            waiting = queued_count(self.store)
            if waiting == seen or waiting >= self.batch_size or time.monotonic() >= deadline:
                return True
            seen = waiting
        return False

    def drain_once(self) -> bool:
        """Take and process one batch of queued requests; False when the queue was empty.

        An empty queue is seen without the lock (one cheap query), so an idle service never delays a batch run.
        """
        if queued_count(self.store) == 0:
            return False
        with self._locked():
            requests = take(self.store, self.batch_size)
            if not requests:
                return False
            given_up = [r for r in requests if r.attempts > MAX_ATTEMPTS]
            results = self._give_up(given_up)
            live = [r for r in requests if r.attempts <= MAX_ATTEMPTS]
            if live:
                person_sync = self.clients.sync(self.store, self.logger)
                for (kind, dry_run), group in _groups(live).items():
                    found = run_once(self.store, person_sync, kind, sorted({r.person_id for r in group}), dry_run)
                    for request in group:
                        answer = found[request.person_id]
                        body = {**answer.to_json(), "requestId": request.request_id}
                        results[request.request_id] = (answer.http_status, body)
            finish(
                self.store,
                None,
                {rid: ("done" if status < 500 else "failed", body) for rid, (status, body) in results.items()},
            )
        for request_id, given in results.items():
            self.answers.give(request_id, given)
        return True

    def _give_up(self, requests: list[QueuedRequest]) -> dict[int, Answer]:
        reason = f"processing failed {MAX_ATTEMPTS} times (see the serve log); given up"
        return {r.request_id: (500, {"personId": r.person_id, "status": "failed", "reason": reason}) for r in requests}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with write_lock(self.store, wait=True, timeout_seconds=self.settings.lock_timeout_seconds, logger=self.logger):
            yield


def _groups(requests: list[QueuedRequest]) -> dict[tuple[RequestKind, bool], list[QueuedRequest]]:
    """Requests by what they ask (a kind and dry run or not): each group is one run."""
    groups: dict[tuple[RequestKind, bool], list[QueuedRequest]] = {}
    for request in requests:
        groups.setdefault((request.kind, request.dry_run), []).append(request)
    return groups
