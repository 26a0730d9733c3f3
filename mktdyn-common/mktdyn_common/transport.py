"""HTTPS sessions with an explicit CA, and the rule "HTTPS everywhere except loopback".

This machine (and many CI images) sets ``REQUESTS_CA_BUNDLE``; requests lets it override a session's
``verify``, which silently replaces the CA a user configured (docs/architecture.md §8). Sessions built here ignore
the environment and pass the configured bundle explicitly; proxies are the one thing they still take from it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
from requests.adapters import HTTPAdapter

from mktdyn_common.errors import ConfigurationError
from mktdyn_common.redact import protect_secrets


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost or a loopback address)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_base_url(url: str | None, setting: str) -> str:
    """Validate a base URL: absolute, https unless loopback, no query; returned without a trailing slash."""
    if not url or not str(url).strip():
        raise ConfigurationError(setting, "is required")
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(setting, f"{text!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(setting, f"{text!r} uses plain http; only https is allowed except on loopback")
    if parts.query or parts.fragment:
        raise ConfigurationError(setting, f"{text!r} must not carry a query string or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigurationError(setting, f"{text!r} has an invalid port") from exc
    return text.rstrip("/")


_VERIFY_REASON = re.compile(r"certificate verify failed: ([^()'\"]+)", re.IGNORECASE)


def tls_failure(exc: requests.exceptions.SSLError, setting: str, ca_bundle: str | None, url: str) -> ConfigurationError:
    """The error for a failed TLS handshake: never worth a retry, and the CA bundle setting is what to fix.

    A certificate that cannot be verified today cannot be verified in a second either; retrying it (as a
    connection failure would be) only delays the one line that says which setting to change.
    """
    match = _VERIFY_REASON.search(str(exc))
    reason = f"certificate verify failed: {match.group(1).strip()}" if match else type(exc).__name__
    host = urlsplit(url).netloc or url
    trusted = f"the CA bundle {ca_bundle}" if ca_bundle else "the system's certificate store (the setting is empty)"
    return ConfigurationError(
        setting,
        f"TLS verification of {host} failed ({reason}); {trusted} does not vouch for the server's certificate: "
        "set it to a PEM file holding the certificate authority that signed it",
    )


def proxy_url(value: object, setting: str) -> str | None:
    """Validate a ``proxy`` setting: empty (use the environment's proxy variables) or an http(s) proxy URL.

    A password in the URL is registered with the redactor, so it never reaches a log line or an error.
    """
    text = str(value or "").strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            setting, "must be an http:// or https:// proxy URL, e.g. http://proxy.example.com:3128"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigurationError(setting, "has an invalid port") from exc
    protect_secrets([parts.password])
    return text


class ExplicitSession(requests.Session):
    """A session that trusts exactly its CA, and takes proxies from its own setting or the proxy variables only.

    ``trust_env`` stays off so that ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` (and ``.netrc``) cannot replace
    the configured CA (docs/architecture.md §8). What the environment legitimately says about the network is read here
    instead, per request: ``proxy`` when set (every request of the connection goes through it), else
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` with ``NO_PROXY`` honoured. Through a proxy, HTTPS is tunnelled
    (CONNECT), so the proxy sees host names only and the CA still verifies the server itself.
    """

    def __init__(self, ca_bundle: str | None, user_agent: str, proxy: str | None = None) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = ca_bundle if ca_bundle else True
        self.headers["User-Agent"] = user_agent
        self.proxy = proxy
        # A proxy password from the environment is as secret as one from the setting (see proxy_url).
        protect_secrets(urlsplit(value).password for value in getproxies().values() if "://" in value)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies one request to ``url`` uses (empty: a direct connection)."""
        if self.proxy:
            return {"http": self.proxy, "https": self.proxy}
        return dict(requests.utils.get_environ_proxies(url))

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """The merge of requests (environment off), then the proxies of :meth:`proxies_for`."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if not settings.get("proxies") and url:
            settings["proxies"] = self.proxies_for(url.decode() if isinstance(url, bytes) else url)
        return settings


def make_session(
    ca_bundle: str | None, user_agent: str, pool_size: int = 10, proxy: str | None = None
) -> ExplicitSession:
    """A pooled :class:`ExplicitSession`: exactly ``ca_bundle`` (or the system store), proxies as it describes."""
    session = ExplicitSession(ca_bundle, user_agent, proxy)
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
