"""Dataverse error responses mapped to exceptions that name the request, the code and the message.

Dataverse's ``error.code`` (``0x80060882``...) says more than the HTTP status, and several codes
need their own handling by callers (a stale ETag, an expired delta token), so each gets a type.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from mktdyn_common.errors import ApiError, AuthenticationError
from mktdyn_common.redact import redact

SYSTEM = "Dataverse"
#: ExpiredVersionStamp: the delta token is older than the change-tracking retention.
EXPIRED_VERSION_STAMP = "0x80044352"
CONCURRENCY_MISMATCH = "0x80060882"
NOT_FOUND = "0x80040217"


class DataverseApiError(ApiError):
    """A Dataverse request failed; ``code`` is Dataverse's own error code (may be empty)."""

    def __init__(
        self, request: str, code: str, message: str, status: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(SYSTEM, request, code or "(none)", message, status, retryable)


class NotFoundError(DataverseApiError):
    """The row (or entity) does not exist."""


class PreconditionFailedError(DataverseApiError):
    """HTTP 412: the row changed since its ETag was read (or a create-only hit an existing row)."""


class ChangeTokenExpiredError(DataverseApiError):
    """The stored delta link is no longer valid: a full resync is needed."""


def error_details(response: requests.Response) -> tuple[str, str]:
    """The ``(code, message)`` of a Dataverse error body, falling back to the status text."""
    return parse_error_body(response.text, response.reason or f"HTTP {response.status_code}")


def parse_error_body(text: str, fallback: str) -> tuple[str, str]:
    """The ``(code, message)`` of an error body (JSON ``{"error": {...}}``; anything else is the message)."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or fallback)
        inner = error.get("innererror")
        if isinstance(inner, dict) and inner.get("message") and inner["message"] not in message:
            message = f"{message} ({inner['message']})"
        return str(error.get("code") or ""), redact(message)
    snippet = (text or "").strip()[:300]
    return "", redact(snippet or fallback)


def is_expired_token(status: int, code: str, message: str) -> bool:
    """Whether an error means "your delta token is no longer usable: resync"."""
    lowered = message.lower()
    return code.lower() == EXPIRED_VERSION_STAMP or (
        400 <= status < 500
        and (
            "version stamp" in lowered or "deltatoken" in lowered or "delta token" in lowered or "full sync" in lowered
        )
    )


def error_for(response: requests.Response, request: str) -> DataverseApiError:
    """The exception for a failed response to ``request`` (``"GET leads"``)."""
    status = response.status_code
    code, message = error_details(response)
    if status == 404:
        return NotFoundError(request, code, message, status)
    if status == 412:
        return PreconditionFailedError(request, code, message, status)
    if is_expired_token(status, code, message):
        return ChangeTokenExpiredError(request, code, message, status)
    retryable = status == 429 or status >= 500
    return DataverseApiError(request, code, message, status, retryable)


def authentication_error(request: str, code: str, message: str, status: int | None = None) -> AuthenticationError:
    """An :class:`AuthenticationError` attributed to Dataverse."""
    return AuthenticationError(SYSTEM, request, code or "(none)", redact(message), status)
