"""The settings of ``mktdyn serve``: frozen, typed, built once from the target's config completed with its defaults.

Defaults live in the settings schema (``plugin/settings.py``); this only reads and checks them, so a
misconfigured service refuses to start with one line naming the setting instead of answering 500s later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mktdyn_common.errors import ConfigurationError
from mktdyn_common.redact import protect_secrets

from target_mktdyn_merge.plugin.settings import merge_settings, with_defaults
from target_mktdyn_merge.sync.merge_settings import MergeSettings

#: A shorter secret can be guessed by trying; Marketo's custom header holds any length.
MIN_SECRET_LENGTH = 16
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class ServeSettings:
    """What the service needs besides the merge's own settings."""

    secret: str
    secret_header: str
    queue_limit: int
    answer_wait_seconds: float
    batch_size: int
    merge: MergeSettings

    def __repr__(self) -> str:  # the secret never reaches a log or a traceback
        return f"ServeSettings(secret_header={self.secret_header!r}, queue_limit={self.queue_limit})"

    def secrets(self) -> tuple[str | None, ...]:
        """Every secret the service holds, to mask in its log lines (docs/architecture.md invariant 1)."""
        connections = self.merge.connections
        names = ("marketo_client_secret", "dynamics_client_secret", "dynamics_password")
        return (self.secret, *(str(connections[n]) if connections.get(n) else None for n in names))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServeSettings:
        """Check and type the serve settings of ``config``.

        Raises:
            ConfigurationError: Naming the first setting that is missing or cannot be used.
        """
        completed = with_defaults(config)
        secret = str(completed.get("serve_secret") or "")
        protect_secrets([secret or None])
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                "serve_secret",
                f"required by `mktdyn serve`, at least {MIN_SECRET_LENGTH} characters "
                "(set TARGET_MKTDYN_MERGE_SERVE_SECRET or the setting)",
            )
        header = str(completed["serve_secret_header"]).strip()
        if not _HEADER_NAME.fullmatch(header):
            raise ConfigurationError("serve_secret_header", f"{header!r} is not an HTTP header name")
        numbers = {name: _positive(completed, name) for name in ("serve_queue_limit", "serve_batch_size")}
        wait = _positive(completed, "serve_answer_wait_seconds", float)
        return cls(
            secret=secret,
            secret_header=header,
            queue_limit=int(numbers["serve_queue_limit"]),
            answer_wait_seconds=wait,
            batch_size=int(numbers["serve_batch_size"]),
            merge=merge_settings(config),
        )


def _positive(config: Mapping[str, Any], name: str, kind: type[float] | type[int] = int) -> float:
    try:
        value = kind(config[name])
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(name, f"expected a number, got {config.get(name)!r}") from exc
    if value <= 0:
        raise ConfigurationError(name, f"must be positive, got {value!r}")
    return value
