"""Marketo access tokens: fetched by POST form body, reused until shortly before expiry.

The documented token request is a GET with the secret in the query string, which urllib3 logs at
DEBUG (docs/architecture.md §8); a POST form body keeps it out of every URL. Token calls are not REST calls (no
envelope, free in the quota), so they get their own retries here, through the shared loop of
:mod:`mktdyn_common.retry` (docs/architecture.md §8: a flaky token endpoint needs them).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from mktdyn_common.backoff import Backoff
from mktdyn_common.errors import ApiError, AuthenticationError, TransientError
from mktdyn_common.retry import Budget, Done, Fail, Outcome, Retry, Verdict, run_with_retries
from mktdyn_common.transport import tls_failure

from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.envelope import SYSTEM

logger = logging.getLogger(__name__)

TOKEN_PATH = "/identity/oauth/token"
REQUEST = f"POST {TOKEN_PATH}"
#: Refresh this long before Marketo says the token expires, so no call carries a dying token.
EXPIRY_MARGIN_SECONDS = 60.0


class TokenSource:
    """Holds the current access token and renews it before expiry or when Marketo rejects it."""

    def __init__(
        self,
        connection: MarketoConnection,
        session: requests.Session,
        calls: Counter[str],
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connection = connection
        self._session = session
        self._calls = calls
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._token: str | None = None
        self._renew_at = 0.0

    def header(self) -> str:
        """The ``Authorization`` header value, fetching a token first when needed."""
        if self._token is None or self._clock() >= self._renew_at:
            self._fetch()
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Forget the token (after 601/602) so the next call fetches a new one."""
        self._token = None

    def _fetch(self) -> None:
        budget = Budget("token-request", self._backoff.attempts, self._backoff)
        payload = run_with_retries(
            self._post,
            lambda outcome, _spent: self._classify(budget, outcome),
            label=f"Marketo {REQUEST}",
            sleep=self._sleep,
            refresh=self.invalidate,
        )
        self._accept(payload)

    def _classify(self, budget: Budget, outcome: Outcome[requests.Response]) -> Verdict[dict[str, Any]]:
        """TLS failures are final; lost connections, 5xx and 429 are retried (a second token request is harmless)."""
        if isinstance(outcome, requests.exceptions.SSLError):
            connection = self._connection
            setting = f"{connection.setting_prefix}ca_bundle"
            return Fail(tls_failure(outcome, setting, connection.ca_bundle, connection.base_url), outcome)
        if not isinstance(outcome, requests.Response):
            lost = TransientError(SYSTEM, REQUEST, "connection", str(outcome), retryable=True)
            return Retry(budget, type(outcome).__name__, lambda _: lost, outcome)
        status = outcome.status_code
        if status >= 500 or status == 429:
            failed = TransientError(SYSTEM, REQUEST, str(status), outcome.text[:200], status)
            return Retry(budget, f"HTTP {status}", lambda _: failed)
        return Done(self._payload(outcome))

    def _post(self) -> requests.Response:
        connection = self._connection
        self._calls["auth"] += 1
        return self._session.post(
            f"{connection.base_url}{TOKEN_PATH}",
            data={
                "grant_type": "client_credentials",
                "client_id": connection.client_id,
                "client_secret": connection.client_secret,
            },
            headers={"Accept": "application/json"},
            timeout=connection.request_timeout,
        )

    def _payload(self, response: requests.Response) -> dict[str, Any]:
        connection = self._connection
        try:
            payload = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if response.status_code in (400, 401, 403) or error:
            description = payload.get("error_description") if isinstance(payload, dict) else None
            raise AuthenticationError(
                SYSTEM,
                REQUEST,
                str(error or response.status_code),
                f"{description or response.text[:200]} (check the settings {connection.setting_prefix}client_id "
                f"and {connection.setting_prefix}client_secret)",
                response.status_code,
            )
        if response.status_code != 200 or not isinstance(payload, dict):
            raise ApiError(
                SYSTEM,
                REQUEST,
                str(response.status_code),
                f"unexpected answer: {response.text[:200]}",
                response.status_code,
            )
        return payload

    def _accept(self, payload: dict[str, Any]) -> None:
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise ApiError(SYSTEM, REQUEST, "invalid-response", "the token response has no access_token")
        try:
            lifetime = float(payload.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = token
        # A token asked for again before expiry comes back with its remaining lifespan; a token
        # with less than the margin left is used once rather than refetched in a loop.
        self._renew_at = self._clock() + max(lifetime - EXPIRY_MARGIN_SECONDS, min(lifetime, 5.0))
        logger.debug("Marketo access token obtained, valid for %.0f s", lifetime)
