"""Request parsing shared by the Marketo handlers: JSON bodies, batch sizes, position tokens.

Each helper aborts with the code Marketo answers for that mistake (612 wrong content type, 609 bad
JSON, 1003 bad parameter), so handlers read as the happy path.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from mktdyn_sandbox.marketo.envelope import fail
from mktdyn_sandbox.web import Request

MAX_BATCH = 300
JSON_TYPES = ("application/json", "text/json")


def json_object(request: Request, now: float) -> dict[str, Any]:
    """The body as a JSON object (612 when not sent as JSON, 609 when it does not parse)."""
    if request.content_type not in JSON_TYPES:
        fail(now, "612")
    try:
        payload = json.loads(request.body.decode("utf-8") or "null")
    except (ValueError, UnicodeDecodeError):
        fail(now, "609")
    if not isinstance(payload, dict):
        fail(now, "609")
    return payload


def optional_json_object(request: Request, now: float) -> dict[str, Any]:
    """A JSON object body if one was sent (enqueue/approve calls usually send none)."""
    if not request.body.strip():
        return {}
    return json_object(request, now)


def batch_size(request: Request, now: float, default: int = MAX_BATCH, maximum: int = MAX_BATCH) -> int:
    """``batchSize`` within 1..maximum (1003 otherwise)."""
    raw = request.param("batchSize")
    if raw in (None, ""):
        return default
    try:
        size = int(str(raw))
    except ValueError:
        fail(now, "1003", f"Invalid batchSize '{raw}'")
    if not 1 <= size <= maximum:
        fail(now, "1003", f"batchSize must be between 1 and {maximum}")
    return size


def int_list(request: Request, name: str, now: float, maximum: int) -> list[int]:
    """A list of integer ids (comma-separated or repeated), at most ``maximum``."""
    values = request.params(name)
    if len(values) > maximum:
        fail(now, "1003", f"Too many values for '{name}' (max {maximum})")
    try:
        return [int(value) for value in values]
    except ValueError:
        fail(now, "1003", f"Invalid value for '{name}'")


def encode_position(kind: str, position: int) -> str:
    """An opaque token for position-based paging (leads, lists, campaigns, job lists)."""
    return base64.b32encode(f"{kind}:{position}".encode("ascii")).decode("ascii").rstrip("=")


def decode_position(request: Request, kind: str, now: float) -> int:
    """The position in ``nextPageToken`` (0 without one; 1003 for a token of another kind)."""
    token = request.param("nextPageToken")
    if not token:
        return 0
    try:
        raw = token.strip().upper()
        text = base64.b32decode(raw + "=" * (-len(raw) % 8)).decode("ascii")
        token_kind, _, position = text.partition(":")
        if token_kind == kind:
            return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    return fail(now, "1003", "Invalid nextPageToken")
