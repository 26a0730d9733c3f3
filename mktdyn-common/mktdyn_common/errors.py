"""Error types every mktdyn component raises, so callers decide exit codes without knowing the API.

docs/architecture.md §9.5: configuration, authentication, quota and store errors end a run with a one-line reason
naming the setting or the API code; record-level outcomes are data, never these exceptions.
"""

from __future__ import annotations


class MktdynError(Exception):
    """Base of every error mktdyn raises on purpose."""


class ConfigurationError(MktdynError):
    """A setting is missing or malformed; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting!r}: {problem}")
        self.setting = setting
        self.problem = problem


class ApiError(MktdynError):
    """An API call failed; names the system, the request, and the API's own code and message."""

    def __init__(
        self,
        system: str,
        request: str,
        code: str,
        message: str,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        where = f"{system} {request}"
        status_text = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{where}: error {code}{status_text}: {message}")
        self.system = system
        self.request = request
        self.code = code
        self.api_message = message
        self.status = status
        self.retryable = retryable


class AuthenticationError(ApiError):
    """Credentials were refused (wrong secret, unknown tenant, expired password)."""


class QuotaExceededError(ApiError):
    """A quota is spent (Marketo 607 daily calls, 1029 export quota); retrying now is pointless.

    ``retry_after`` says, in words, when it is worth trying again.
    """

    def __init__(
        self, system: str, request: str, code: str, message: str, retry_after: str, status: int | None = None
    ) -> None:
        super().__init__(system, request, code, f"{message}; retry after {retry_after}", status)
        self.retry_after = retry_after


class TransientError(ApiError):
    """Retries ran out on an error that is normally temporary (rate limits, 5xx, resets)."""
