"""One Marketo REST call, done right: token, pacing, budget, retries, error mapping, counting.

Every request of :class:`~tap_marketo_leads.client.MarketoClient` goes through
:meth:`MarketoTransport.call` (JSON envelopes) or :meth:`MarketoTransport.open_file` (bulk export
files), so the rules below hold for all of them:

- 601/602 → a new token and one more try; 606/615 → wait, with delays that add up to more than
  Marketo's 20-second rate window before giving up; 5xx, resets, 604/608/611/713 → exponential
  backoff; 607/1029 → :class:`~mktdyn_common.errors.QuotaExceededError` at once.
- A write that may have reached Marketo (connection lost after sending, 5xx) is not repeated
  blindly: the caller gets a :class:`~mktdyn_common.errors.TransientError` saying it is in doubt.
- ``max_daily_calls`` is a hard budget per client; ``calls`` counts requests by kind.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from mktdyn_common.backoff import Backoff
from mktdyn_common.errors import ApiError, ConfigurationError, QuotaExceededError, TransientError
from mktdyn_common.transport import make_session, tls_failure

from tap_marketo_leads.auth import TokenSource
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.envelope import SYSTEM, MarketoApiError, Remedy, raise_for_envelope

logger = logging.getLogger(__name__)

#: Kinds of calls counted in :attr:`MarketoTransport.calls`.
CALL_KINDS = ("read", "write", "auth", "metadata")


@dataclass(frozen=True)
class RetryPolicy:
    """How persistent the client is; the defaults follow Marketo's documented limits.

    Attributes:
        attempts: Retries for transient failures (5xx, resets, time-outs, 604/608/611/713).
        base_delay: First backoff delay in seconds; doubles per attempt, with jitter.
        max_delay: Cap of one backoff delay.
        throttle_attempts: Retries after 606/615; with the delays below their sum exceeds the window.
        throttle_base_delay: First wait after 606/615 (a lone 606 usually clears within a second or two).
        rate_window_seconds: Marketo's rate window (100 calls per 20 s per instance).
        rate_limit_calls: Calls this client allows itself per window before pausing on its own.
        reauth_attempts: New tokens tried after 601/602 before the error is final.
        file_not_ready_attempts: Retries of a 404 on a just-completed export file.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    throttle_attempts: int = 8
    throttle_base_delay: float = 1.0
    rate_window_seconds: float = 20.0
    rate_limit_calls: int = 100
    reauth_attempts: int = 2
    file_not_ready_attempts: int = 6


class MarketoTransport:
    """The HTTP edge of the Marketo client (one pooled session, one token, one budget)."""

    def __init__(
        self,
        connection: MarketoConnection,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection = connection
        self.retry = retry or RetryPolicy()
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._session = session or make_session(connection.ca_bundle, connection.user_agent, proxy=connection.proxy)
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(base=self.retry.base_delay, cap=self.retry.max_delay, attempts=self.retry.attempts)
        self._throttle = Backoff(
            base=self.retry.throttle_base_delay,
            cap=self.retry.rate_window_seconds,
            attempts=self.retry.throttle_attempts,
        )
        self._recent: deque[float] = deque()
        self.token = TokenSource(connection, self._session, self.calls, self._backoff, clock, sleep)

    @property
    def rest_calls(self) -> int:
        """REST calls spent so far (identity calls are free in Marketo's quota)."""
        return sum(count for kind, count in self.calls.items() if kind != "auth")

    def tls_failure(self, exc: requests.exceptions.SSLError) -> ConfigurationError:
        """A failed TLS verification: not retried, and it names the CA bundle setting."""
        connection = self.connection
        return tls_failure(exc, f"{connection.setting_prefix}ca_bundle", connection.ca_bundle, connection.base_url)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    # -- the envelope call --------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Send one REST request and return its successful envelope.

        Args:
            method: HTTP method.
            path: Path below the host root, e.g. ``/rest/v1/leads.json``.
            kind: ``read``, ``write`` or ``metadata`` (for :attr:`calls`).
            params: Query parameters.
            json_body: JSON body (writes).
            form: Form body (``_method=GET`` reads with long filters).
            idempotent: False when repeating the request after it may have been processed could
                duplicate data (custom activities); such a request is retried only when Marketo
                certainly did not process it (601/602/606/615, connection refused).

        Raises:
            QuotaExceededError: 607, 1029, or this client's ``max_daily_calls`` budget is spent.
            AuthenticationError: Credentials or permissions refused.
            TransientError: Retries ran out, or a non-idempotent request is in doubt.
            MarketoApiError: Any other error code.
        """
        request_name = f"{method} {path}"
        failures: Counter[str] = Counter()
        while True:
            try:
                response = self._send(method, path, kind=kind, params=params, json_body=json_body, form=form)
            except requests.exceptions.SSLError as exc:
                raise self.tls_failure(exc) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                certainly_unsent = isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc)
                if not idempotent and not certainly_unsent:
                    raise TransientError(
                        SYSTEM,
                        request_name,
                        "in-doubt",
                        f"connection lost after sending ({type(exc).__name__}); "
                        "the request may or may not have been applied",
                    ) from exc
                self._pause_or_raise(failures, "connection", request_name, type(exc).__name__, None)
                continue
            if response.status_code >= 500:
                if not idempotent:
                    raise TransientError(
                        SYSTEM,
                        request_name,
                        str(response.status_code),
                        f"server error after sending; the request may or may not have been "
                        f"applied: {response.text[:200]}",
                        response.status_code,
                    )
                self._pause_or_raise(
                    failures, "http-5xx", request_name, f"HTTP {response.status_code}", response.status_code
                )
                continue
            payload = self._decode(response, request_name)
            try:
                return raise_for_envelope(payload, request_name, response.status_code)
            except MarketoApiError as exc:
                if exc.remedy is Remedy.RETRY and not idempotent:
                    raise
                self._remedy_or_raise(failures, request_name, exc, response.status_code)

    def _remedy_or_raise(
        self, failures: Counter[str], request_name: str, exc: MarketoApiError, status: int | None
    ) -> None:
        """Do what the error's code asks (new token, wait out the window, back off) or re-raise it."""
        if exc.remedy is Remedy.REAUTHENTICATE:
            failures["token"] += 1
            self.retries[f"code-{exc.code}"] += 1
            if failures["token"] > self.retry.reauth_attempts:
                raise exc
            logger.info("Marketo %s answered %s (%s); fetching a new token", request_name, exc.code, exc.api_message)
            self.token.invalidate()
        elif exc.remedy is Remedy.THROTTLE:
            self._throttle_or_raise(failures, request_name, exc)
        elif exc.remedy is Remedy.RETRY:
            self._pause_or_raise(failures, f"code-{exc.code}", request_name, f"error {exc.code}", status)
        else:
            raise exc

    def _decode(self, response: requests.Response, request_name: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                SYSTEM,
                request_name,
                str(response.status_code),
                f"expected a JSON envelope, got {response.headers.get('Content-Type', 'no content type')}: "
                f"{response.text[:200]!r}",
                response.status_code,
            ) from exc

    # -- bulk export files --------------------------------------------------------------------
    def open_file(self, path: str, offset: int) -> requests.Response:
        """Open a streamed bulk-export file download from byte ``offset``.

        Retries a 404 (a just-completed file is sometimes not yet downloadable), 5xx and
        connection failures; the caller reads the body and resumes from its own offset if the
        stream breaks.

        Raises:
            ApiError: 404 that persists (code ``file-not-found``), or another unexpected status.
            TransientError: Retries ran out.
        """
        request_name = f"GET {path}"
        failures: Counter[str] = Counter()
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        while True:
            try:
                response = self._send("GET", path, kind="read", headers=headers, stream=True)
            except requests.exceptions.SSLError as exc:
                raise self.tls_failure(exc) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._pause_or_raise(failures, "connection", request_name, type(exc).__name__, None)
                continue
            if response.status_code in (200, 206) and not _is_json(response):
                return response
            if response.status_code in (200, 206):
                # Marketo answers a refused file request (601/602 token, 606/615 rate, 611...) with HTTP 200
                # and a JSON envelope: taken as file bytes it would corrupt the export (checksum, columns).
                payload = self._decode(response, request_name)
                response.close()
                try:
                    raise_for_envelope(payload, request_name, response.status_code)
                except MarketoApiError as exc:
                    self._remedy_or_raise(failures, request_name, exc, response.status_code)
                    continue
                raise ApiError(SYSTEM, request_name, "invalid-response", "a JSON envelope instead of the file", 200)
            text = response.text[:200]
            response.close()
            if response.status_code == 404:
                failures["file-not-ready"] += 1
                self.retries["file-not-ready"] += 1
                if failures["file-not-ready"] > self.retry.file_not_ready_attempts:
                    raise ApiError(SYSTEM, request_name, "file-not-found", f"HTTP 404: {text}", 404)
                delay = self._backoff.delay(failures["file-not-ready"])
                logger.info("Marketo export file not downloadable yet (404); retry in %.1f s", delay)
                self._sleep(delay)
                continue
            if response.status_code >= 500:
                self._pause_or_raise(
                    failures, "http-5xx", request_name, f"HTTP {response.status_code}", response.status_code
                )
                continue
            if response.status_code == 416:
                raise ApiError(SYSTEM, request_name, "416", f"range from byte {offset} not satisfiable", 416)
            payload = None
            with contextlib.suppress(ValueError):
                payload = response.json()
            if isinstance(payload, dict):
                raise_for_envelope(payload, request_name, response.status_code)
            raise ApiError(SYSTEM, request_name, str(response.status_code), text, response.status_code)

    # -- plumbing -----------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        self._check_budget(f"{method} {path}")
        self._pace()
        request_headers = {"Authorization": self.token.header(), "Accept": "application/json"}
        if headers:
            request_headers.update(headers)
        self.calls[kind] += 1
        self._recent.append(self._clock())
        logger.debug("Marketo %s %s", method, path)
        return self._session.request(
            method,
            f"{self.connection.base_url}{path}",
            params=params,
            json=json_body,
            data=form,
            headers=request_headers,
            timeout=self.connection.request_timeout,
            stream=stream,
        )

    def _check_budget(self, request_name: str) -> None:
        budget = self.connection.max_daily_calls
        if self.rest_calls >= budget:
            raise QuotaExceededError(
                SYSTEM,
                request_name,
                "max_daily_calls",
                f"this run has spent its budget of {budget} REST calls (setting max_daily_calls)",
                retry_after="the next run, or raise max_daily_calls if the subscription's quota allows",
            )

    def _pace(self) -> None:
        """Stay under the instance's rate on our own, so 606 comes only from other integrations."""
        window = self.retry.rate_window_seconds
        now = self._clock()
        while self._recent and now - self._recent[0] >= window:
            self._recent.popleft()
        if len(self._recent) >= self.retry.rate_limit_calls:
            wait = window - (now - self._recent[0])
            if wait > 0:
                logger.info(
                    "Pacing Marketo calls: %d in the last %.0f s; waiting %.1f s", len(self._recent), window, wait
                )
                self._sleep(wait)

    def _pause_or_raise(
        self, failures: Counter[str], reason: str, request_name: str, what: str, status: int | None
    ) -> None:
        failures["transient"] += 1
        self.retries[reason] += 1
        attempt = failures["transient"]
        if attempt > self.retry.attempts:
            raise TransientError(SYSTEM, request_name, reason, f"{what}; gave up after {attempt - 1} retries", status)
        delay = self._backoff.delay(attempt)
        logger.warning(
            "Marketo %s failed (%s); retry %d of %d in %.1f s", request_name, what, attempt, self.retry.attempts, delay
        )
        self._sleep(delay)

    def _throttle_or_raise(self, failures: Counter[str], request_name: str, exc: MarketoApiError) -> None:
        failures["throttle"] += 1
        self.retries[f"code-{exc.code}"] += 1
        attempt = failures["throttle"]
        if attempt > self.retry.throttle_attempts:
            raise TransientError(
                SYSTEM,
                request_name,
                exc.code,
                f"{exc.api_message}; still limited after {attempt - 1} waits spanning more than "
                f"the {self.retry.rate_window_seconds:.0f}-second window",
                exc.status,
            ) from exc
        delay = self._throttle.delay(attempt)
        if exc.code == "606" and self._recent:
            # Our own calls in the current window count too: never retry before the oldest of
            # them has left the window if we alone could have filled it.
            window = self.retry.rate_window_seconds
            if len(self._recent) >= self.retry.rate_limit_calls:
                delay = max(delay, window - (self._clock() - self._recent[0]))
        logger.warning(
            "Marketo %s rate-limited (%s: %s); waiting %.1f s (attempt %d)",
            request_name,
            exc.code,
            exc.api_message,
            delay,
            attempt,
        )
        self._sleep(delay)


def _is_json(response: requests.Response) -> bool:
    """Whether a response carries JSON (an error envelope) rather than a file."""
    return "json" in response.headers.get("Content-Type", "").lower()
