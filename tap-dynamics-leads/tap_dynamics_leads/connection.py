"""The settings one Dataverse connection needs, validated once, shared by the tap and the target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mktdyn_common.errors import ConfigurationError
from mktdyn_common.transport import proxy_url, secure_base_url

AUTH_FLOWS = ("client_credentials", "password")
MAX_PAGE_SIZE = 5000


def _thumbprint(value: Any, setting: str) -> str | None:
    """A certificate's SHA-1 thumbprint as Entra shows it (40 hex digits; colons and spaces allowed)."""
    text = "".join(str(value or "").split()).replace(":", "").upper()
    if not text:
        return None
    if len(text) != 40 or any(c not in "0123456789ABCDEF" for c in text):
        raise ConfigurationError(setting, "must be the certificate's SHA-1 thumbprint: 40 hexadecimal digits")
    return text


def _flag(value: Any) -> bool:
    """A boolean setting that may arrive as text from an environment variable."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class DataverseConnection:
    """Where and how to reach one Dataverse environment (the tap's settings of docs/architecture.md §9.4).

    Frozen so that a client's identity (and the msal application it shares) cannot drift after
    construction. ``prefix`` in :meth:`from_config` lets the target read the same settings as
    ``dynamics_*`` while error messages still name the setting the user actually wrote.
    """

    base_url: str
    tenant_id: str
    client_id: str
    client_secret: str | None = None
    auth_flow: str = "client_credentials"
    username: str | None = None
    password: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None
    proxy: str | None = None
    client_certificate_path: str | None = None
    client_certificate_thumbprint: str | None = None
    request_timeout: float = 120.0
    user_agent: str = "mktdyn/0.1 (+tap-dynamics-leads)"
    page_size: int = MAX_PAGE_SIZE
    change_tracking: bool = True
    api_version: str = "9.2"
    setting_prefix: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], prefix: str = "") -> DataverseConnection:
        """Build and validate from a plugin config; ``prefix`` is ``"dynamics_"`` in the target."""

        def value(name: str, default: Any = None) -> Any:
            found = config.get(prefix + name)
            return default if found is None or found == "" else found

        def setting(name: str) -> str:
            return prefix + name

        base_url = secure_base_url(value("base_url"), setting("base_url"))
        if "/api/data" in urlsplit(base_url).path.lower():
            raise ConfigurationError(setting("base_url"), "give the organization URL without /api/data/...")
        authority_host = secure_base_url(value("authority_host", cls.authority_host), setting("authority_host"))
        for name in ("tenant_id", "client_id"):
            if not value(name):
                raise ConfigurationError(setting(name), "is required")
        auth_flow = str(value("auth_flow", "client_credentials"))
        if auth_flow not in AUTH_FLOWS:
            raise ConfigurationError(setting("auth_flow"), f"must be one of {', '.join(AUTH_FLOWS)}")
        certificate = str(value("client_certificate_path", "")).strip() or None
        thumbprint = _thumbprint(value("client_certificate_thumbprint"), setting("client_certificate_thumbprint"))
        if certificate is not None and not Path(certificate).is_file():
            raise ConfigurationError(setting("client_certificate_path"), f"{certificate!r} is not a readable file")
        if thumbprint is not None and certificate is None:
            raise ConfigurationError(setting("client_certificate_path"), "is required with a certificate thumbprint")
        if auth_flow == "client_credentials" and not (value("client_secret") or certificate):
            raise ConfigurationError(
                setting("client_secret"),
                f"is required with auth_flow client_credentials (or set {setting('client_certificate_path')!r})",
            )
        if auth_flow == "password":
            for name in ("username", "password"):
                if not value(name):
                    raise ConfigurationError(setting(name), "is required with auth_flow password")
        page_size = int(value("page_size", MAX_PAGE_SIZE))
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(setting("page_size"), f"must be between 1 and {MAX_PAGE_SIZE}")
        timeout = float(value("request_timeout", 120.0))
        if timeout <= 0:
            raise ConfigurationError(setting("request_timeout"), "must be positive")
        api_version = str(value("api_version", "9.2")).lstrip("v")
        if not api_version.replace(".", "").isdigit():
            raise ConfigurationError(setting("api_version"), f"{api_version!r} is not a version like 9.2")
        return cls(
            base_url=base_url,
            tenant_id=str(value("tenant_id")).strip(),
            client_id=str(value("client_id")).strip(),
            client_secret=value("client_secret"),
            auth_flow=auth_flow,
            username=value("username"),
            password=value("password"),
            authority_host=authority_host,
            ca_bundle=value("ca_bundle"),
            proxy=proxy_url(value("proxy"), setting("proxy")),
            client_certificate_path=certificate,
            client_certificate_thumbprint=thumbprint,
            request_timeout=timeout,
            user_agent=str(value("user_agent", cls.user_agent)),
            page_size=page_size,
            change_tracking=_flag(value("change_tracking", True)),
            api_version=api_version,
            setting_prefix=prefix,
        )

    @property
    def api_url(self) -> str:
        """The Web API root, ``{base_url}/api/data/v{api_version}``."""
        return f"{self.base_url}/api/data/v{self.api_version}"

    @property
    def authority(self) -> str:
        """The tenant's authority, ``{authority_host}/{tenant_id}``."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def scope(self) -> str:
        """The Dataverse resource scope, ``{base_url}/.default``."""
        return f"{self.base_url}/.default"

    def setting(self, name: str) -> str:
        """The name of a setting as the user wrote it (with the target's prefix)."""
        return self.setting_prefix + name

    def secrets(self) -> tuple[str | None, ...]:
        """Values that must never reach a log."""
        return (self.client_secret, self.password)

    def __repr__(self) -> str:
        """Without the secrets, so a logged connection leaks nothing."""
        return (
            f"DataverseConnection(base_url={self.base_url!r}, tenant_id={self.tenant_id!r}, "
            f"client_id={self.client_id!r}, auth_flow={self.auth_flow!r})"
        )
