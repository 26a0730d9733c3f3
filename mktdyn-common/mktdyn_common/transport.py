"""HTTPS sessions with an explicit CA, and the rule "HTTPS everywhere except loopback".

This machine (and many CI images) sets ``REQUESTS_CA_BUNDLE``; requests lets it override a session's
``verify``, which silently replaces the CA a user configured (DESIGN §8). Sessions built here ignore
the environment and pass the configured bundle explicitly.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from mktdyn_common.errors import ConfigurationError


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


def make_session(ca_bundle: str | None, user_agent: str, pool_size: int = 10) -> requests.Session:
    """A pooled session that trusts exactly ``ca_bundle`` (or the system store) whatever the environment says."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle if ca_bundle else True
    session.headers["User-Agent"] = user_agent
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
