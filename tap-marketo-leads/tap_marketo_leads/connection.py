"""How to reach one Marketo subscription: validated once, from the tap's or the target's settings.

The tap reads ``base_url``, ``client_id`` ...; the target reads the same names with a ``marketo_``
prefix. Both go through :meth:`MarketoConnection.from_config`, so a bad value fails the same way,
with a message naming the setting the user actually wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mktdyn_common.errors import ConfigurationError
from mktdyn_common.transport import proxy_url, secure_base_url

DEFAULT_USER_AGENT = "mktdyn/0.1 (+tap-marketo-leads)"
#: Marketo's batch limit for lead-database calls.
MAX_BATCH = 300
# The forms Marketo's admin page shows (…/rest, …/identity) name the same host as the bare root.
_ENDPOINT_SUFFIXES = ("/rest/v1", "/rest", "/identity")


def normalize_base_url(url: Any, setting: str) -> str:
    """The host root (``https://X.mktorest.com``) from any of the forms Marketo shows.

    Args:
        url: The configured value.
        setting: The setting's name, for the error message.

    Raises:
        ConfigurationError: When the URL is missing, not absolute, plain http off loopback, or has
            a path other than the REST or identity suffix.
    """
    text = secure_base_url(None if url is None else str(url), setting)
    for suffix in _ENDPOINT_SUFFIXES:
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)].rstrip("/")
            break
    path = urlsplit(text).path
    if path not in ("", "/"):
        raise ConfigurationError(
            setting,
            f"{url!r} has an unexpected path {path!r}; use the host root, e.g. https://123-ABC-456.mktorest.com",
        )
    return text.rstrip("/")


def _required_text(config: Mapping[str, Any], setting: str) -> str:
    value = config.get(setting)
    if value is None or not str(value).strip():
        raise ConfigurationError(setting, "is required")
    return str(value).strip()


def _positive_number(config: Mapping[str, Any], setting: str, default: float) -> float:
    value = config.get(setting)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(setting, f"{value!r} is not a number") from exc
    if number <= 0:
        raise ConfigurationError(setting, f"must be greater than 0 (got {value!r})")
    return number


def _whole_number(config: Mapping[str, Any], setting: str, default: int, low: int, high: int | None) -> int:
    value = config.get(setting)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigurationError(setting, f"{value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigurationError(setting, f"{value!r} is not a whole number") from exc
    if number < low or (high is not None and number > high):
        upper = f" and {high}" if high is not None else ""
        raise ConfigurationError(setting, f"must be between {low}{upper} (got {value!r})")
    return number


@dataclass(frozen=True)
class MarketoConnection:
    """Everything a :class:`~tap_marketo_leads.client.MarketoClient` needs; the secret stays out of repr."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    ca_bundle: str | None = None
    proxy: str | None = None
    request_timeout: float = 120.0
    user_agent: str = DEFAULT_USER_AGENT
    max_daily_calls: int = 10_000
    page_size: int = MAX_BATCH
    #: How the settings are named where they came from ("" in the tap, "marketo_" in the target), so errors
    #: name the setting the user actually has to fix.
    setting_prefix: str = field(default="", compare=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], prefix: str = "") -> MarketoConnection:
        """Validate ``{prefix}base_url``, ``{prefix}client_id`` … and build a connection.

        Args:
            config: The plugin's settings.
            prefix: ``""`` for the tap, ``"marketo_"`` for the target.

        Raises:
            ConfigurationError: Naming the first bad setting.
        """
        base_url = normalize_base_url(config.get(f"{prefix}base_url"), f"{prefix}base_url")
        client_id = _required_text(config, f"{prefix}client_id")
        client_secret = _required_text(config, f"{prefix}client_secret")
        ca_setting = f"{prefix}ca_bundle"
        ca_bundle = str(config.get(ca_setting) or "").strip() or None
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise ConfigurationError(ca_setting, f"{ca_bundle!r} is not a readable file")
        user_agent = str(config.get(f"{prefix}user_agent") or DEFAULT_USER_AGENT)
        return cls(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            ca_bundle=ca_bundle,
            proxy=proxy_url(config.get(f"{prefix}proxy"), f"{prefix}proxy"),
            request_timeout=_positive_number(config, f"{prefix}request_timeout", 120.0),
            user_agent=user_agent,
            max_daily_calls=_whole_number(config, f"{prefix}max_daily_calls", 10_000, 1, None),
            page_size=_whole_number(config, f"{prefix}page_size", MAX_BATCH, 1, MAX_BATCH),
            setting_prefix=prefix,
        )
