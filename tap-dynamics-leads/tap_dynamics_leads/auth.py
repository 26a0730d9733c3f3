"""Bearer tokens from Microsoft Entra through msal: client credentials (secret or certificate) or password (ROPC).

msal is the supported way to talk to Entra, but it needs four things done around it (docs/architecture.md §8):
an HTTP client that ignores ``REQUESTS_CA_BUNDLE``, trusts the configured CA and uses the configured
proxy, the authority's port restored on the user-realm call msal builds from the hostname alone,
``instance_discovery=False`` for
hosts that are not Microsoft's, and one application object per process (msal caches tokens and
throttles per object), created lazily because its constructor already talks to the network.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from mktdyn_common.backoff import Backoff, retry_after_seconds
from mktdyn_common.errors import AuthenticationError, ConfigurationError, TransientError
from mktdyn_common.redact import protect_secrets, redact
from mktdyn_common.retry import Budget, Done, Fail, Outcome, Retry, Verdict, run_with_retries
from mktdyn_common.transport import ExplicitSession, tls_failure

from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import SYSTEM, authentication_error

logger = logging.getLogger(__name__)

#: Entra error codes (AADSTS...) and OAuth errors mapped to the setting the user should check.
_SETTING_BY_AADSTS = {
    "AADSTS7000215": "client_secret",  # invalid client secret
    "AADSTS7000222": "client_secret",  # expired client secret
    "AADSTS700027": "client_certificate_path",  # client assertion: signature invalid, key not found
    "AADSTS700024": "client_certificate_path",  # client assertion: not within its valid time range
    "AADSTS700016": "client_id",  # application not found in the tenant
    "AADSTS90002": "tenant_id",  # tenant not found
    "AADSTS900023": "tenant_id",  # malformed tenant
    "AADSTS50126": "password",  # invalid username or password
    "AADSTS50034": "username",  # user does not exist
    "AADSTS50055": "password",  # password expired
    "AADSTS50076": "auth_flow",  # MFA required: ROPC cannot be used
}
_SETTING_BY_ERROR = {"invalid_client": "client_secret", "unauthorized_client": "client_id", "invalid_grant": "password"}
#: Refresh this many seconds (at most) before a token expires, so no request carries a dying token.
REFRESH_MARGIN_SECONDS = 120.0
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class AuthorityHttpClient(ExplicitSession):
    """The HTTP client msal uses: the connection's CA and proxy, authority port kept, transient retries.

    It is the same kind of session as the Web API's (:class:`~mktdyn_common.transport.ExplicitSession`), so
    token requests trust the same CA and go through the same proxy. msal builds the user-realm URL as
    ``https://{hostname}/common/userrealm/...``: for an authority on a non-default port (a sandbox) that
    request would go to port 443. Requests to the authority's host without a port get the configured port
    back. msal's own token POST has no retry, so 429/5xx and connection failures are retried here with
    backoff; a failed TLS verification is not (it names the CA setting instead).
    """

    def __init__(self, connection: DataverseConnection, backoff: Backoff | None = None) -> None:
        super().__init__(connection.ca_bundle, connection.user_agent, connection.proxy)
        self._connection = connection
        parts = urlsplit(connection.authority_host)
        self._host = (parts.hostname or "").lower()
        self._port = parts.port
        self._timeout = connection.request_timeout
        self._backoff = backoff or Backoff(base=0.5, cap=10.0, attempts=5)

    def restore_port(self, url: str) -> str:
        """``url`` with the authority's port put back when msal dropped it."""
        if self._port is None:
            return url
        parts = urlsplit(url)
        if (parts.hostname or "").lower() != self._host or parts.port is not None:
            return url
        return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{self._port}"))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with the port restored and transient failures retried."""
        target = self.restore_port(url.decode() if isinstance(url, bytes) else url)
        kwargs.setdefault("timeout", self._timeout)
        budget = Budget("authority", self._backoff.attempts, self._backoff, max_wait=60.0)
        return run_with_retries(
            lambda: super(AuthorityHttpClient, self).request(method, target, *args, **kwargs),
            lambda outcome, spent: self._classify(budget, target, outcome, spent[budget.name] + 1),
            label="authority request",
            sleep=time.sleep,
            refresh=lambda: None,
        )

    def _classify(
        self, budget: Budget, target: str, outcome: Outcome[requests.Response], attempt: int
    ) -> Verdict[requests.Response]:
        """TLS failures are final; lost connections and 429/5xx are retried, and the last answer goes to msal."""
        if isinstance(outcome, requests.exceptions.SSLError):
            connection = self._connection
            return Fail(tls_failure(outcome, connection.setting("ca_bundle"), connection.ca_bundle, target), outcome)
        if not isinstance(outcome, requests.Response):
            return Retry(budget, type(outcome).__name__, lambda _: outcome, level=logging.INFO)
        if outcome.status_code not in _TRANSIENT_STATUS or attempt > budget.limit:
            return Done(outcome)
        status = outcome.status_code
        wait = retry_after_seconds(outcome.headers.get("Retry-After"))
        # Not raised in practice: the try after the last one allowed is handed to msal above.
        spent = TransientError(SYSTEM, "authority request", str(status), "retries ran out", status, retryable=True)
        return Retry(budget, f"HTTP {status}", lambda _: spent, wait=wait, level=logging.INFO)


def certificate_credential(connection: DataverseConnection) -> dict[str, str]:
    """The msal certificate credential from ``client_certificate_path``: the private key and the SHA-1 thumbprint.

    The PEM file holds the private key and the certificate registered on the app (the form Entra's
    documentation and ``openssl req -x509 -keyout`` produce). The thumbprint is the configured one, or else
    computed from that certificate, so only the file is required. msal signs the client assertion (RS256,
    ``x5t`` header) with the key; the key text is registered with the redactor.
    """
    path_setting = connection.setting("client_certificate_path")
    path = Path(connection.client_certificate_path or "")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(path_setting, f"{str(path)!r} cannot be read: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            path_setting, f"{str(path)!r} holds no unencrypted PEM private key (PEM with the key and the certificate)"
        ) from exc
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    thumbprint = connection.client_certificate_thumbprint
    if thumbprint is None:
        if not certificates:
            raise ConfigurationError(
                path_setting,
                f"{str(path)!r} holds no certificate: add it to the PEM or set "
                f"{connection.setting('client_certificate_thumbprint')!r}",
            )
        thumbprint = certificates[0].fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's x5t is SHA-1
    private_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    protect_secrets([private_key])
    return {"private_key": private_key, "thumbprint": thumbprint}


_APPS: dict[tuple[str, ...], msal.ClientApplication] = {}
_APPS_LOCK = threading.Lock()


def _fingerprint(secret: str | None) -> str:
    return hashlib.sha256(secret.encode()).hexdigest() if secret else ""


def _is_microsoft_host(host: str) -> bool:
    return host.lower() in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS


def application(connection: DataverseConnection) -> msal.ClientApplication:
    """The process-wide msal application for this authority, client and credential.

    Keyed by authority and client id as msal intends, plus a fingerprint of the secret and the CA:
    a client built with a different secret must not silently reuse another one's token cache.
    """
    key = (
        connection.authority,
        connection.client_id,
        _fingerprint(connection.client_secret),
        connection.client_certificate_path or "",
        connection.client_certificate_thumbprint or "",
        connection.ca_bundle or "",
        connection.proxy or "",
    )
    with _APPS_LOCK:
        app = _APPS.get(key)
        if app is not None:
            return app
        http_client = AuthorityHttpClient(connection)
        host = urlsplit(connection.authority_host).hostname or ""
        options: dict[str, Any] = {
            "authority": connection.authority,
            "http_client": http_client,
            "token_cache": msal.TokenCache(),
        }
        if not _is_microsoft_host(host):
            options["instance_discovery"] = False
        try:
            if connection.client_certificate_path:
                app = msal.ConfidentialClientApplication(
                    connection.client_id, client_credential=certificate_credential(connection), **options
                )
            elif connection.client_secret:
                app = msal.ConfidentialClientApplication(
                    connection.client_id, client_credential=connection.client_secret, **options
                )
            else:
                app = msal.PublicClientApplication(connection.client_id, **options)
        except ValueError as exc:
            # msal's constructor fetches the tenant's OpenID configuration; a 4xx means "no such tenant".
            raise authentication_error(
                f"GET {connection.authority}/v2.0/.well-known/openid-configuration",
                "tenant_discovery",
                f"the authority does not know tenant {connection.tenant_id!r}; check setting "
                f"{connection.setting('tenant_id')!r} (and {connection.setting('authority_host')!r}): {exc}",
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(
                SYSTEM,
                f"GET {connection.authority}",
                "connection",
                f"cannot reach the authority; check setting "
                f"{connection.setting('authority_host')!r}: {redact(str(exc))}",
            ) from exc
        _APPS[key] = app
        return app


class TokenProvider:
    """Hands out a valid bearer token for one connection, refreshing ahead of expiry.

    msal already serves tokens from its cache, but only refreshes when fewer than five minutes
    remain; tokens shorter-lived than that (a sandbox's) would be fetched on every call. This keeps
    the token until a margin before its own expiry, and :meth:`invalidate` drops it (and msal's
    cached copy) after a 401 so the single retry gets a fresh one.
    """

    def __init__(
        self,
        connection: DataverseConnection,
        on_identity_call: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._on_identity_call = on_identity_call
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0

    def token(self) -> str:
        """A bearer token valid for at least the refresh margin."""
        with self._lock:
            if self._token is not None and self._clock() < self._valid_until:
                return self._token
            result = self._acquire()
            lifetime = float(result.get("expires_in") or 600)
            self._token = str(result["access_token"])
            self._valid_until = self._clock() + lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 5)
            return self._token

    def invalidate(self) -> None:
        """Forget the current token here and in msal's cache (the server refused it)."""
        with self._lock:
            self._token = None
            self._valid_until = 0.0
            app = application(self._connection)
            cache = app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if item.get("client_id") == self._connection.client_id:
                    cache.remove_at(item)

    def _acquire(self) -> dict[str, Any]:
        connection = self._connection
        app = application(connection)
        scopes = [connection.scope]
        try:
            if connection.auth_flow == "password":
                result = self._password_grant(app, scopes)
            else:
                result = app.acquire_token_for_client(scopes=scopes)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(
                SYSTEM,
                f"POST {connection.authority} token",
                "connection",
                f"cannot reach the authority: {redact(str(exc))}",
            ) from exc
        except requests.HTTPError as exc:  # msal raises for a failed user-realm lookup
            raise authentication_error(
                f"GET {connection.authority_host}/common/userrealm",
                "userrealm",
                f"user realm discovery failed; check setting {connection.setting('username')!r}: {exc}",
            ) from exc
        if not result or "access_token" not in result:
            raise self._refused(result or {})
        if result.get("token_source") != "cache" and self._on_identity_call is not None:
            self._on_identity_call()
        return dict(result)

    def _password_grant(self, app: msal.ClientApplication, scopes: list[str]) -> dict[str, Any] | None:
        connection = self._connection
        accounts = app.get_accounts(username=connection.username)
        if accounts:
            silent = app.acquire_token_silent(scopes, account=accounts[0])
            if silent and "access_token" in silent:
                return dict(silent)
        result: dict[str, Any] | None = app.acquire_token_by_username_password(
            connection.username, connection.password, scopes=scopes
        )
        return result

    def _refused(self, result: dict[str, Any]) -> AuthenticationError:
        connection = self._connection
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "no description")
        setting = _SETTING_BY_ERROR.get(error, "client_id")
        for code, name in _SETTING_BY_AADSTS.items():
            if code in description:
                setting = name
                break
        if setting == "password" and connection.auth_flow != "password":
            setting = "client_secret"
        if setting == "client_secret" and connection.client_certificate_path:
            setting = "client_certificate_path"
        if setting == "client_secret" and connection.auth_flow == "password" and not connection.client_secret:
            setting = "client_id"
        first_line = description.splitlines()[0] if description else ""
        check = f"setting {connection.setting(setting)!r}"
        if setting == "client_certificate_path":
            check = (
                f"settings {connection.setting(setting)!r} and {connection.setting('client_certificate_thumbprint')!r}"
                " (the key must belong to a certificate registered on the app)"
            )
        return authentication_error(
            f"POST {connection.authority}/oauth2/v2.0/token ({connection.auth_flow})",
            error,
            f"the authority refused the credentials; check {check}: {first_line}",
        )
