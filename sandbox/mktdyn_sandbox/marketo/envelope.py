"""Marketo's JSON envelope: ``requestId``, ``success``, ``result``, ``errors``, ``warnings``.

Real lead-database responses omit empty ``errors``/``warnings`` while asset responses always carry
them, and every failure is an HTTP 200 with ``success:false`` and a non-empty ``errors`` list whose
``code`` is a quoted integer. Clients read ``errors[0]``, so these helpers never produce an empty list.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from typing import Any, NoReturn

from mktdyn_sandbox.web import RequestError, Response

#: Fixed messages of the request-level codes (reference §4).
MESSAGES: dict[str, str] = {
    "601": "Access token invalid",
    "602": "Access token expired",
    "605": "HTTP Method not supported",
    "607": "Daily quota reached",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
}

_counter = itertools.count(secrets.randbelow(0xFFFF))
_counter_lock = threading.Lock()


def request_id(now: float) -> str:
    """A ``hex#hex`` id like Marketo's (a per-process counter, then the time in milliseconds)."""
    with _counter_lock:
        serial = next(_counter) & 0xFFFFF
    return f"{serial:x}#{int(now * 1000):x}"


def ok(now: float, result: list[Any] | None = None, **extra: Any) -> Response:
    """A lead-database success envelope; ``result`` is left out only when None."""
    payload: dict[str, Any] = {"requestId": request_id(now)}
    if result is not None:
        payload["result"] = result
    payload["success"] = True
    payload.update(extra)
    return Response.json(payload)


def asset_ok(now: float, result: list[Any] | None, warnings: list[str] | None = None) -> Response:
    """An asset-API success envelope: ``errors`` and ``warnings`` always present."""
    payload: dict[str, Any] = {"success": True, "errors": [], "requestId": request_id(now), "warnings": warnings or []}
    if result is not None:
        payload["result"] = result
    return Response.json(payload)


def failure(now: float, code: str, message: str | None = None) -> Response:
    """A request-level failure: HTTP 200, ``success:false``, one error."""
    text = message if message is not None else MESSAGES.get(code, "Error")
    return Response.json({"requestId": request_id(now), "success": False, "errors": [{"code": code, "message": text}]})


def fail(now: float, code: str, message: str | None = None) -> NoReturn:
    """Abort the handler with a request-level failure (the limits refund the call)."""
    raise RequestError(failure(now, code, message))


def reason(code: str, message: str) -> dict[str, str]:
    """One record-level reason/error item."""
    return {"code": code, "message": message}


def skipped(code: str, message: str, key: str = "reasons") -> dict[str, Any]:
    """A skipped record's result (``reasons`` for leads, ``errors`` for custom activities)."""
    return {"status": "skipped", key: [reason(code, message)]}
