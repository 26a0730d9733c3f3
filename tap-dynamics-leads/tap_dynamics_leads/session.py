"""One authenticated, retrying HTTP channel to a Dataverse environment.

Every Dataverse request goes through :meth:`DataverseSession.send`, so the rules live once: a pooled
session that trusts exactly the configured CA, a bearer token refreshed ahead of expiry (one retry
after a 401), 429 answered by sleeping ``Retry-After``, 5xx and connection failures retried with
backoff (writes that might already have happened are not replayed), and every failure mapped to an
exception naming the request and Dataverse's code. Calls are counted by kind for the caller.
The loop itself is the shared :func:`mktdyn_common.retry.run_with_retries`; this module only says what
each Dataverse answer means.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from mktdyn_common.backoff import Backoff, retry_after_seconds
from mktdyn_common.errors import AuthenticationError, TransientError
from mktdyn_common.retry import Budget, Done, Fail, Outcome, Refresh, Retry, Verdict, never_sent, run_with_retries
from mktdyn_common.transport import make_session, tls_failure

from tap_dynamics_leads.auth import TokenProvider
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import SYSTEM, authentication_error, error_details, error_for

logger = logging.getLogger(__name__)

KINDS = ("read", "write", "auth", "metadata")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Refusals Dataverse answers before doing anything (service protection, unavailable): safe to resend.
_NOT_PROCESSED = frozenset({429, 503})
#: Longest single wait for a Retry-After; Dataverse asks for seconds to a few minutes.
MAX_RETRY_AFTER = 300.0
_TRANSIENT = "transient"
#: One new token per request after a 401; a second 401 means the identity itself is refused.
_ONE_NEW_TOKEN = Budget("token", limit=1)
BASE_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


class BearerTokens(Protocol):
    """Where bearer tokens come from (msal in production; a fixed token in offline tests)."""

    def token(self) -> str:
        """A currently valid token."""

    def invalidate(self) -> None:
        """Drop the current token (the server refused it)."""


@dataclass(frozen=True)
class _Request:
    """What the classification of one request's outcomes needs to know about it."""

    label: str
    url: str
    resend_safe: bool
    allow: tuple[int, ...]
    transient: Budget


class DataverseSession:
    """Sends requests to one environment's Web API with auth, retries and error mapping."""

    def __init__(
        self,
        connection: DataverseConnection,
        calls: Counter[str],
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tokens: BearerTokens | None = None,
    ) -> None:
        self.connection = connection
        self.calls = calls
        self.backoff = backoff or Backoff(base=0.5, cap=30.0, attempts=6)
        self._sleep = sleep
        self._calls_lock = threading.Lock()
        self._http = make_session(connection.ca_bundle, connection.user_agent, proxy=connection.proxy)
        self._http.headers.update(BASE_HEADERS)
        self.tokens: BearerTokens = tokens or TokenProvider(connection, on_identity_call=self._count_auth)
        origin = urlsplit(connection.base_url)
        self._origin = (origin.scheme, origin.netloc.lower())

    def _count_auth(self) -> None:
        with self._calls_lock:
            self.calls["auth"] += 1

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` under the Web API root."""
        return f"{self.connection.api_url}/{path.lstrip('/')}"

    def own_url(self, url: str) -> str:
        """``url`` (a server-built next/delta link) moved onto the configured origin.

        Links carry the host the server saw; a delta link kept in state may come from another port
        or a renamed environment. The bearer token must never go anywhere but ``base_url``.
        """
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) == self._origin:
            return url
        return urlunsplit((self._origin[0], self._origin[1], parts.path, parts.query, parts.fragment))

    def label(self, method: str, url: str) -> str:
        """``"GET leads"``: the request as error messages name it (no query: it may hold emails)."""
        path = urlsplit(url).path
        root = urlsplit(self.connection.api_url).path
        if path.startswith(root):
            path = path[len(root) :]
        return f"{method} {path.lstrip('/') or '/'}"

    def send(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        resend_safe: bool = True,
        allow: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one request and return its successful (or explicitly allowed) response.

        Args:
            kind: ``read``, ``write`` or ``metadata``; counted in :attr:`calls` per attempt.
            method: HTTP method.
            url: absolute URL (on the configured origin).
            headers: extra headers (``Prefer``, ``If-Match``, ``Content-Type``).
            json_body: a JSON body.
            data: a raw body (``$batch``).
            resend_safe: whether a request that may have reached the server can be sent again; false
                for creates, so a connection lost mid-create surfaces instead of creating twice.
            allow: non-2xx statuses returned instead of raised (404 for a lookup).
        """
        label = self.label(method, url)
        url = self.own_url(url)

        def attempt() -> requests.Response:
            request_headers = {"Authorization": f"Bearer {self.tokens.token()}", **(headers or {})}
            with self._calls_lock:  # pages are prefetched from a worker thread
                self.calls[kind] += 1
            return self._http.request(
                method, url, headers=request_headers, json=json_body, data=data, timeout=self.connection.request_timeout
            )

        request = _Request(
            label, url, resend_safe, allow, Budget(_TRANSIENT, self.backoff.attempts, self.backoff, MAX_RETRY_AFTER)
        )
        return run_with_retries(
            attempt,
            lambda outcome, spent: self._classify(request, outcome, spent[_TRANSIENT] + 1),
            label=label,
            sleep=self._sleep,
            refresh=self.tokens.invalidate,
        )

    def _classify(
        self, request: _Request, outcome: Outcome[requests.Response], attempt: int
    ) -> Verdict[requests.Response]:
        """What one outcome means to Dataverse; ``attempt`` counts the tries so far (a new token aside)."""
        label = request.label
        if isinstance(outcome, requests.exceptions.SSLError):
            connection = self.connection
            return Fail(
                tls_failure(outcome, connection.setting("ca_bundle"), connection.ca_bundle, request.url), outcome
            )
        if not isinstance(outcome, requests.Response):
            name = type(outcome).__name__
            if not (request.resend_safe or never_sent(outcome)):
                lost = f"connection lost after sending; the outcome is unknown ({name})"
                return Fail(TransientError(SYSTEM, label, "connection", lost, retryable=True), outcome)
            return Retry(
                request.transient,
                name,
                lambda n: TransientError(
                    SYSTEM, label, "connection", f"no answer after {n} attempts ({name})", retryable=True
                ),
                outcome,
            )
        status = outcome.status_code
        if status < 300 or status == 304 or status in request.allow:
            return Done(outcome)
        if status == 401:
            return Refresh(_ONE_NEW_TOKEN, "token refused (HTTP 401)", lambda _: self._refused(label, outcome))
        if status == 403:
            return Fail(self._refused(label, outcome))
        if status in _RETRY_STATUS and not request.resend_safe and status not in _NOT_PROCESSED:
            # A write that cannot be resent (a create, a $batch) may have been processed before the server
            # failed: sending it again could create a record twice. The caller resolves it by lookup.
            unknown = f"HTTP {status} after sending; the outcome is unknown"
            return Fail(TransientError(SYSTEM, label, f"http_{status}", unknown, status, retryable=True))
        if status in _RETRY_STATUS:
            wait = retry_after_seconds(outcome.headers.get("Retry-After"))
            return Retry(request.transient, f"HTTP {status}", lambda n: _final_error(label, outcome, n), wait=wait)
        return Fail(_final_error(label, outcome, attempt))

    def _refused(self, label: str, response: requests.Response) -> AuthenticationError:
        """A 401 that a new token did not cure, or a 403: the identity of the connection is refused."""
        status = response.status_code
        code, message = error_details(response)
        who = "username" if self.connection.auth_flow == "password" else "client_id"
        return authentication_error(
            label,
            code or f"http_{status}",
            f"{message}; the environment refused the identity of setting {self.connection.setting(who)!r}",
            status,
        )

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()


def _final_error(label: str, response: requests.Response, attempts: int) -> Exception:
    """The error of a failed response after ``attempts`` tries: transient ones say when trying again is worth it."""
    error = error_for(response, label)
    if not error.retryable:
        return error
    status = response.status_code
    tried = f"after {attempts} attempts"
    if status == 429:  # say when it is worth trying again, as a spent Marketo quota does
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        when = f"{wait:.0f} s" if wait is not None else "a few minutes"
        tried += f"; service protection limit: retry after {when} (its Retry-After), e.g. the next run"
    transient = TransientError(SYSTEM, label, error.code, f"{error.api_message} ({tried})", status, retryable=True)
    transient.__cause__ = error
    return transient
