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

The loop itself is the shared :func:`mktdyn_common.retry.run_with_retries`; this module only says what
each Marketo answer (its error codes) means.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from mktdyn_common.backoff import Backoff
from mktdyn_common.errors import ApiError, ConfigurationError, QuotaExceededError, TransientError
from mktdyn_common.retry import Budget, Done, Fail, Outcome, Refresh, Retry, Verdict, never_sent, run_with_retries
from mktdyn_common.transport import make_session, tls_failure

from tap_marketo_leads.auth import TokenSource
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.envelope import SYSTEM, MarketoApiError, Remedy, raise_for_envelope

logger = logging.getLogger(__name__)

#: Seconds a paced call waits beyond our own window: Marketo meters a call on arrival, after we sent it.
PACE_MARGIN = 0.5

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
        self._transient_budget = Budget("transient", self.retry.attempts, self._backoff)
        self._throttle_budget = Budget("throttle", self.retry.throttle_attempts, self._throttle)
        self._token_budget = Budget("token", self.retry.reauth_attempts)
        self._file_budget = Budget("file-not-ready", self.retry.file_not_ready_attempts, self._backoff)
        self._recent: deque[float] = deque()
        self._pace_lock = threading.Lock()
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
        resend_safe: bool = True,
    ) -> dict[str, Any]:
        """Send one REST request and return its successful envelope.

        Args:
            method: HTTP method.
            path: Path below the host root, e.g. ``/rest/v1/leads.json``.
            kind: ``read``, ``write`` or ``metadata`` (for :attr:`calls`).
            params: Query parameters.
            json_body: JSON body (writes).
            form: Form body (``_method=GET`` reads with long filters).
            resend_safe: False when repeating the request after it may have been processed could
                duplicate data (custom activities); such a request is retried only when Marketo
                certainly did not process it (601/602/606/615, a connection never made).

        Raises:
            QuotaExceededError: 607, 1029, or this client's ``max_daily_calls`` budget is spent.
            AuthenticationError: Credentials or permissions refused.
            TransientError: Retries ran out, or a request that is not resend-safe is in doubt.
            MarketoApiError: Any other error code.
        """
        request_name = f"{method} {path}"
        return run_with_retries(
            lambda: self._send(method, path, kind=kind, params=params, json_body=json_body, form=form),
            lambda outcome, _spent: self._classify_envelope(request_name, outcome, resend_safe),
            label=f"Marketo {request_name}",
            sleep=self._sleep,
            refresh=self.token.invalidate,
            retries=self.retries,
        )

    def _classify_envelope(
        self, request_name: str, outcome: Outcome[requests.Response], resend_safe: bool
    ) -> Verdict[dict[str, Any]]:
        if not isinstance(outcome, requests.Response):
            return self._connection_failed(request_name, outcome, resend_safe)
        status = outcome.status_code
        if status >= 500:
            if not resend_safe:
                doubt = (
                    f"server error after sending; the request may or may not have been applied: {outcome.text[:200]}"
                )
                return Fail(TransientError(SYSTEM, request_name, str(status), doubt, status))
            return self._transient(request_name, "http-5xx", f"HTTP {status}", status)
        payload = self._decode(outcome, request_name)
        try:
            return Done(raise_for_envelope(payload, request_name, status))
        except MarketoApiError as exc:
            if exc.remedy is Remedy.RETRY and not resend_safe:
                return Fail(exc)
            return self._remedy(request_name, exc, status)

    def _connection_failed(
        self, request_name: str, exc: requests.ConnectionError | requests.Timeout, resend_safe: bool
    ) -> Fail | Retry:
        """TLS failures are final; a lost connection is retried unless a request not resend-safe may have gone."""
        if isinstance(exc, requests.exceptions.SSLError):
            return Fail(self.tls_failure(exc), exc)
        if not (resend_safe or never_sent(exc)):
            lost = f"connection lost after sending ({type(exc).__name__}); the request may or may not have been applied"
            return Fail(TransientError(SYSTEM, request_name, "in-doubt", lost), exc)
        return self._transient(request_name, "connection", type(exc).__name__, None, exc)

    def _transient(
        self, request_name: str, reason: str, what: str, status: int | None, cause: BaseException | None = None
    ) -> Retry:
        """Back off and retry (5xx, resets, 604/608/611/713) until :attr:`RetryPolicy.attempts` are spent."""
        return Retry(
            self._transient_budget,
            reason,
            lambda n: TransientError(SYSTEM, request_name, reason, f"{what}; gave up after {n - 1} retries", status),
            cause,
            what=what,
        )

    def _remedy(self, request_name: str, exc: MarketoApiError, status: int | None) -> Verdict[Any]:
        """What the error's code asks: a new token, waiting out the window, backing off, or nothing (final)."""
        reason = f"code-{exc.code}"
        if exc.remedy is Remedy.REAUTHENTICATE:
            return Refresh(self._token_budget, reason, lambda _: exc)
        if exc.remedy is Remedy.THROTTLE:
            window = self.retry.rate_window_seconds
            return Retry(
                self._throttle_budget,
                reason,
                lambda n: TransientError(
                    SYSTEM,
                    request_name,
                    exc.code,
                    f"{exc.api_message}; still limited after {n - 1} waits spanning more than "
                    f"the {window:.0f}-second window",
                    exc.status,
                ),
                exc,
                at_least=self._own_window_wait() if exc.code == "606" else 0.0,
                what=f"rate-limited ({exc.code}: {exc.api_message})",
            )
        if exc.remedy is Remedy.RETRY:
            return self._transient(request_name, reason, f"error {exc.code}", status)
        return Fail(exc)

    def _own_window_wait(self) -> float:
        """The least wait after a 606: our own calls in the current window count too.

        Never retry before the oldest of them has left the window if we alone could have filled it.
        """
        if len(self._recent) < self.retry.rate_limit_calls:
            return 0.0
        return self.retry.rate_window_seconds - (self._clock() - self._recent[0])

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
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return run_with_retries(
            lambda: self._send("GET", path, kind="read", headers=headers, stream=True),
            lambda outcome, _spent: self._classify_file(request_name, outcome, offset),
            label=f"Marketo {request_name}",
            sleep=self._sleep,
            refresh=self.token.invalidate,
            retries=self.retries,
        )

    def _classify_file(
        self, request_name: str, outcome: Outcome[requests.Response], offset: int
    ) -> Verdict[requests.Response]:
        if not isinstance(outcome, requests.Response):
            return self._connection_failed(request_name, outcome, resend_safe=True)
        status = outcome.status_code
        if status in (200, 206) and not _is_json(outcome):
            return Done(outcome)
        if status in (200, 206):
            # Marketo answers a refused file request (601/602 token, 606/615 rate, 611...) with HTTP 200
            # and a JSON envelope: taken as file bytes it would corrupt the export (checksum, columns).
            payload = self._decode(outcome, request_name)
            outcome.close()
            try:
                raise_for_envelope(payload, request_name, status)
            except MarketoApiError as exc:
                return self._remedy(request_name, exc, status)
            return Fail(ApiError(SYSTEM, request_name, "invalid-response", "a JSON envelope instead of the file", 200))
        text = outcome.text[:200]
        outcome.close()
        if status == 404:
            not_found = ApiError(SYSTEM, request_name, "file-not-found", f"HTTP 404: {text}", 404)
            not_ready = "export file not downloadable yet (404)"
            return Retry(self._file_budget, "file-not-ready", lambda _: not_found, level=logging.INFO, what=not_ready)
        if status >= 500:
            return self._transient(request_name, "http-5xx", f"HTTP {status}", status)
        if status == 416:
            return Fail(ApiError(SYSTEM, request_name, "416", f"range from byte {offset} not satisfiable", 416))
        payload = None
        with contextlib.suppress(ValueError):
            payload = outcome.json()
        if isinstance(payload, dict):
            raise_for_envelope(payload, request_name, status)
        return Fail(ApiError(SYSTEM, request_name, str(status), text, status))

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
        """Stay under the instance's rate on our own, so 606 comes only from other integrations.

        Marketo counts a call when it arrives, a little after we sent it, so a call sent the moment our oldest
        one leaves *our* window can still find it in Marketo's and be refused (606, then a wait of up to the
        whole window): the wait keeps ``PACE_MARGIN`` in hand. Threads of one client (the pipelined export's
        and the reader's) take their turn under one lock, so two cannot both take the window's last call.
        """
        window = self.retry.rate_window_seconds
        with self._pace_lock:
            now = self._clock()
            while self._recent and now - self._recent[0] >= window + PACE_MARGIN:
                self._recent.popleft()
            if len(self._recent) >= self.retry.rate_limit_calls:
                wait = window + PACE_MARGIN - (now - self._recent[0])
                if wait > 0:
                    logger.info(
                        "Pacing Marketo calls: %d in the last %.0f s; waiting %.1f s", len(self._recent), window, wait
                    )
                    self._sleep(wait)
                self._recent.popleft()
            self._recent.append(self._clock())


def _is_json(response: requests.Response) -> bool:
    """Whether a response carries JSON (an error envelope) rather than a file."""
    return "json" in response.headers.get("Content-Type", "").lower()
