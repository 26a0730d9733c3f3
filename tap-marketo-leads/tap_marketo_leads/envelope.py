"""Marketo's response envelope and what each of its error codes asks the client to do.

Marketo answers almost everything with HTTP 200 and ``{"success": false, "errors": [...]}``; the
code decides between re-authenticating, waiting out the rate window, retrying, stopping for the day
or failing. Keeping that table here means the client's retry loop reads as policy, not as trivia.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from mktdyn_common.errors import ApiError, AuthenticationError, QuotaExceededError

SYSTEM = "Marketo"
QUOTA_RESET = "midnight US Central time, when Marketo resets the daily quota"


class Remedy(Enum):
    """What the client does about a failed call."""

    REAUTHENTICATE = "reauthenticate"  # 601/602: the token is bad; get a new one and repeat
    THROTTLE = "throttle"  # 606/615: the 20-second rate window or the concurrency limit is full
    RETRY = "retry"  # transient server trouble
    QUOTA = "quota"  # a daily or queue quota is spent: waiting minutes will not help this run
    FATAL = "fatal"  # a bug or a configuration problem: repeating changes nothing


_TOKEN_CODES = frozenset({"601", "602"})
_THROTTLE_CODES = frozenset({"606", "615"})
# 502 gateway, 604 time-out, 608 unavailable, 611 system error, 713 transient, 1014/1016/1019/1022
# (import/job contention, retried by marketorestpython too).
_RETRY_CODES = frozenset({"502", "604", "608", "611", "713", "1014", "1016", "1019", "1022"})
_QUOTA_CODES = frozenset({"607", "1029"})
_AUTH_CODES = frozenset({"603"})


def remedy_for(code: str) -> Remedy:
    """The remedy Marketo's documentation (and long-running clients) prescribe for ``code``."""
    if code in _TOKEN_CODES:
        return Remedy.REAUTHENTICATE
    if code in _THROTTLE_CODES:
        return Remedy.THROTTLE
    if code in _RETRY_CODES:
        return Remedy.RETRY
    if code in _QUOTA_CODES:
        return Remedy.QUOTA
    return Remedy.FATAL


class MarketoApiError(ApiError):
    """A Marketo error envelope; ``remedy`` tells the retry loop what to do with it."""

    def __init__(self, request: str, code: str, message: str, status: int | None = None) -> None:
        self.remedy = remedy_for(code)
        super().__init__(
            SYSTEM,
            request,
            code,
            message,
            status,
            retryable=self.remedy in (Remedy.REAUTHENTICATE, Remedy.THROTTLE, Remedy.RETRY),
        )


def quota_error(request: str, code: str, message: str) -> QuotaExceededError:
    """The stop-for-now error for 607 and 1029, saying when a retry can succeed."""
    lowered = message.lower()
    if code == "1029" and "quota" not in lowered:
        when = "the queued bulk exports of this subscription finish (usually minutes)"
    elif code == "1029":
        when = f"{QUOTA_RESET} (the 500 MB daily bulk export quota is spent)"
    else:
        when = QUOTA_RESET
    return QuotaExceededError(SYSTEM, request, code, message, retry_after=when)


def first_error(payload: dict[str, Any]) -> tuple[str, str]:
    """``(code, message)`` of the first error of a failed envelope (Marketo puts the cause first)."""
    errors = payload.get("errors") or []
    if errors and isinstance(errors[0], dict):
        return str(errors[0].get("code", "unknown")), str(errors[0].get("message", ""))
    return "unknown", "success was false without an error"


def raise_for_envelope(payload: Any, request: str, status: int | None = None) -> dict[str, Any]:
    """Return the envelope when it says success; otherwise raise the matching error.

    Raises:
        QuotaExceededError: 607 and 1029.
        AuthenticationError: 603 (access denied: permissions or IP allow-list).
        MarketoApiError: Every other code, carrying the remedy.
    """
    if not isinstance(payload, dict):
        raise MarketoApiError(
            request, "invalid-response", f"expected a JSON object, got {type(payload).__name__}", status
        )
    if payload.get("success") is True:
        result = payload.get("result")
        if result is not None and not (isinstance(result, list) and all(isinstance(r, dict) for r in result)):
            # Read as a list of objects by every caller: a string would be iterated character by character.
            raise MarketoApiError(
                request, "invalid-response", f"'result' is not a list of objects: {str(result)[:120]!r}", status
            )
        return payload
    code, message = first_error(payload)
    remedy = remedy_for(code)
    if remedy is Remedy.QUOTA:
        raise quota_error(request, code, message)
    if code in _AUTH_CODES:
        raise AuthenticationError(
            SYSTEM, request, code, f"{message} (check the API user's role permissions and IP allow-list)", status
        )
    raise MarketoApiError(request, code, message, status)


def record_reasons(item: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Per-record ``(code, message)`` pairs; custom activities say ``errors`` where leads say ``reasons``."""
    raw = item.get("reasons") or item.get("errors") or item.get("reason") or []
    if isinstance(raw, dict):
        raw = [raw]
    return tuple(
        (str(reason.get("code", "")), str(reason.get("message", ""))) for reason in raw if isinstance(reason, dict)
    )
