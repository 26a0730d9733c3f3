"""Multipart ``$batch`` bodies: build the request, parse the per-operation answers.

No changesets: docs/architecture.md §4 wants ``odata.continue-on-error`` so one bad row does not sink the batch,
and a changeset is all-or-nothing. Each operation asks for ``return=representation`` so the result
carries what Dataverse stored (and its ETag), the baseline the merge keeps.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tap_dynamics_leads import odata
from tap_dynamics_leads.errors import parse_error_body

CRLF = "\r\n"
MAX_OPERATIONS = 1000
_GUID_IN_URL = re.compile(r"\(([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)\s*$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/\d\.\d\s+(\d{3})")


@dataclass(frozen=True)
class BatchOperation:
    """One request inside a batch; ``path`` is relative to the Web API root (``leads(<id>)``)."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, entity_set: str, body: Mapping[str, Any], select: Sequence[str] = ()) -> BatchOperation:
        """A create that answers with the stored row."""
        path = odata.identifier(entity_set)
        if select:
            path += "?" + odata.encode_query({"$select": odata.select_clause(select)})
        return cls("POST", path, body, {"Prefer": "return=representation"})

    @classmethod
    def update(
        cls, entity_set: str, row_id: str, body: Mapping[str, Any], etag: str | None = None, select: Sequence[str] = ()
    ) -> BatchOperation:
        """An update of an existing row, conditional on ``etag`` when given (``*`` otherwise: never creates)."""
        path = odata.entity_path(entity_set, row_id)
        if select:
            path += "?" + odata.encode_query({"$select": odata.select_clause(select)})
        return cls("PATCH", path, body, {"If-Match": etag or "*", "Prefer": "return=representation"})

    @classmethod
    def delete(cls, entity_set: str, row_id: str, etag: str | None = None) -> BatchOperation:
        """A delete, conditional on ``etag`` when given."""
        return cls("DELETE", odata.entity_path(entity_set, row_id), None, {"If-Match": etag or "*"})


@dataclass(frozen=True)
class BatchResult:
    """What happened to one operation: status, stored row, ETag, id, or Dataverse's error."""

    index: int
    status: int
    body: dict[str, Any] | None = None
    etag: str | None = None
    entity_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the operation succeeded."""
        return 200 <= self.status < 300


def build(operations: Sequence[BatchOperation], api_url: str, boundary: str | None = None) -> tuple[str, bytes]:
    """The ``Content-Type`` and body of a ``$batch`` request (absolute inner URLs, CRLF line ends)."""
    if not operations:
        raise ValueError("a batch needs at least one operation")
    if len(operations) > MAX_OPERATIONS:
        raise ValueError(f"a batch holds at most {MAX_OPERATIONS} operations, got {len(operations)}")
    boundary = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for index, operation in enumerate(operations, start=1):
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {index}",
            "",
            f"{operation.method} {api_url}/{operation.path} HTTP/1.1",
        ]
        lines += [f"{name}: {value}" for name, value in operation.headers.items()]
        if operation.body is not None:
            lines += [
                "Content-Type: application/json; type=entry",
                "",
                json.dumps(operation.body, ensure_ascii=False, separators=(",", ":")),
            ]
        else:
            lines += [""]
        lines += [""]
    lines += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode("utf-8")


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """Headers (lower-cased names) and the rest of a MIME part or HTTP message."""
    normalized = text.replace("\r\n", "\n")
    head, _, rest = normalized.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parts(body: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    pieces = body.split(delimiter)
    parts = []
    for piece in pieces[1:]:
        if piece.startswith("--"):
            break
        parts.append(piece.lstrip("\r\n"))
    return parts


def boundary_of(content_type: str) -> str | None:
    """The multipart boundary named in a ``Content-Type`` header."""
    match = _BOUNDARY.search(content_type or "")
    return match.group(1) if match else None


def _result(index: int, http_message: str) -> BatchResult:
    status_line, _, rest = http_message.replace("\r\n", "\n").partition("\n")
    match = _STATUS_LINE.match(status_line.strip())
    status = int(match.group(1)) if match else 0
    headers, payload = _split_head(rest)
    payload = payload.strip()
    body: dict[str, Any] | None = None
    if payload:
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
    entity_url = headers.get("odata-entityid") or headers.get("location") or ""
    found = _GUID_IN_URL.search(entity_url)
    etag = headers.get("etag") or (str(body["@odata.etag"]) if body and body.get("@odata.etag") else None)
    if 200 <= status < 300:
        return BatchResult(index, status, body, etag, found.group(1) if found else None)
    code, message = parse_error_body(payload, f"HTTP {status}")
    return BatchResult(index, status, None, None, found.group(1) if found else None, code, message)


def parse(content_type: str, body: bytes | str, expected: int) -> list[BatchResult]:
    """Per-operation results of a multipart ``$batch`` answer, in request order.

    Nested changeset answers are flattened. When Dataverse stopped early (no continue-on-error),
    operations it never ran come back with status 0 and say so.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError(f"not a multipart answer: {content_type!r}")
    results: list[BatchResult] = []
    for part in _parts(text, boundary):
        headers, rest = _split_head(part)
        inner = boundary_of(headers.get("content-type", "")) if "multipart" in headers.get("content-type", "") else None
        if inner:
            for nested in _parts(rest, inner):
                _, message = _split_head(nested)
                results.append(_result(len(results), message))
        else:
            results.append(_result(len(results), rest))
    while len(results) < expected:
        results.append(
            BatchResult(
                len(results), 0, error_code="not_run", error_message="Dataverse stopped the batch before this operation"
            )
        )
    return results
