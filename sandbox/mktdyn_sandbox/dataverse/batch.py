"""``POST $batch`` (multipart/mixed, reference §5.5): parse, dispatch each part, answer multipart.

Inner requests go through the same route handlers as direct calls, so validation, ETags, counters and
service protection apply to each operation. A changeset is atomic (its writes share one savepoint) and
its ``$n`` Content-ID references resolve to the rows created earlier in it. Without
``odata.continue-on-error`` the batch stops at the first failure and answers 400 with the responses so
far (the failing one last); with it, every part runs and the batch answers 200.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from mktdyn_sandbox.dataverse import errors
from mktdyn_sandbox.dataverse.odata import API_PATH
from mktdyn_sandbox.dataverse.query import parse_prefer
from mktdyn_sandbox.dataverse.records import RecordService
from mktdyn_sandbox.web import Request, Response

MAX_OPERATIONS = 1000
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_REFERENCE = re.compile(r"^\$(\d+)(.*)$")


class BatchFormatError(ValueError):
    """A body that is not a well-formed multipart batch."""


@dataclass
class Part:
    """One MIME part: its headers (lower-case names) and body."""

    headers: dict[str, str]
    body: str


@dataclass
class Operation:
    """One inner HTTP request of a batch."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    content_id: str | None = None


@dataclass
class Changeset:
    """Operations that succeed or fail together."""

    operations: list[Operation] = field(default_factory=list)


def boundary_of(content_type: str) -> str | None:
    """The ``boundary`` parameter of a multipart Content-Type."""
    match = _BOUNDARY.search(content_type or "")
    return match.group(1) if match else None


def split_parts(body: str, boundary: str) -> list[Part]:
    """The parts between ``--boundary`` delimiters (CRLF or bare LF line endings both accepted)."""
    parts: list[Part] = []
    current: list[str] | None = None
    closed = False
    for line in body.splitlines(keepends=True):
        stripped = line.rstrip("\r\n").rstrip()
        if stripped in (f"--{boundary}", f"--{boundary}--"):
            if current is not None:
                parts.append(_part("".join(current)))
            if stripped.endswith("--") and stripped != f"--{boundary}":
                closed = True
                break
            current = []
        elif current is not None:
            current.append(line)
    if not closed:
        raise BatchFormatError(f"the multipart body is not closed by '--{boundary}--'")
    return parts


def _part(raw: str) -> Part:
    # The line break before a delimiter belongs to the delimiter.
    if raw.endswith("\r\n"):
        raw = raw[:-2]
    elif raw.endswith("\n"):
        raw = raw[:-1]
    head, body = _split_head(raw)
    return Part(_headers(head), body)


def _split_head(raw: str) -> tuple[str, str]:
    for separator in ("\r\n\r\n", "\n\n"):
        if separator in raw:
            head, body = raw.split(separator, 1)
            return head, body
    return raw, ""


def _headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers


def parse_operation(part: Part) -> Operation:
    """The HTTP request inside an ``application/http`` part."""
    if not part.headers.get("content-type", "").lower().startswith("application/http"):
        raise BatchFormatError("each batch part must be application/http or a multipart/mixed changeset")
    text = part.body.lstrip("\r\n")
    request_line, _, rest = text.partition("\n")
    pieces = request_line.strip().split(" ")
    if len(pieces) < 2:
        raise BatchFormatError(f"malformed request line {request_line!r}")
    method = pieces[0].upper()
    url = " ".join(pieces[1:-1]) if len(pieces) > 2 and pieces[-1].startswith("HTTP/") else " ".join(pieces[1:])
    head, body = _split_head(rest)
    return Operation(method, url, _headers(head), body.rstrip("\r\n"), part.headers.get("content-id"))


def parse_batch(content_type: str, body: str) -> list[Operation | Changeset]:
    """The top-level items of a batch: single operations and changesets."""
    boundary = boundary_of(content_type)
    if not content_type.lower().startswith("multipart/mixed") or boundary is None:
        raise BatchFormatError("a $batch request must be multipart/mixed with a boundary")
    items: list[Operation | Changeset] = []
    for part in split_parts(body, boundary):
        part_type = part.headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            inner = boundary_of(part_type)
            if inner is None:
                raise BatchFormatError("a changeset needs a boundary")
            items.append(Changeset([parse_operation(p) for p in split_parts(part.body, inner)]))
        else:
            items.append(parse_operation(part))
    return items


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def render_response(response: Response, content_id: str | None) -> str:
    """One inner response as an ``application/http`` part (headers and body, no delimiter)."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {_phrase(response.status)}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items() if name.lower() != "content-length"]
    lines += ["", response.body.decode("utf-8")]
    return "\r\n".join(lines)


class BatchExecutor:
    """Runs a parsed batch through an inner dispatcher."""

    def __init__(self, records: RecordService, dispatch: Callable[[Request], Response]) -> None:
        self.records = records
        self.dispatch = dispatch

    def _inner_request(self, outer: Request, operation: Operation, references: dict[str, str]) -> Request:
        url = operation.url
        reference = _REFERENCE.match(url)
        if reference is not None:
            target = references.get(reference.group(1))
            if target is None:
                raise errors.bad_request(
                    errors.INVALID_ARGUMENT,
                    f"Content-ID Reference: '${reference.group(1)}' does not exist in the batch context.",
                )
            url = target + reference.group(2)
        parts = urlsplit(url)
        path = parts.path if parts.path.startswith("/") else f"{API_PATH}/{parts.path}"
        target_path = path + (f"?{parts.query}" if parts.query else "")
        headers = Message()
        for name in ("Authorization", "Host"):
            if outer.header(name):
                headers[name] = outer.header(name) or ""
        for name, value in operation.headers.items():
            headers[name] = value
        body = operation.body
        if body.strip() and references:
            body = self._resolve_body_references(body, references)
        return Request(operation.method, target_path.replace(" ", "%20"), headers, body.encode("utf-8"), outer.base_url)

    @staticmethod
    def _resolve_body_references(body: str, references: dict[str, str]) -> str:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict):
            return body

        def resolve(value: Any) -> Any:
            if isinstance(value, str):
                match = _REFERENCE.match(value)
                if match is not None and match.group(1) in references:
                    return urlsplit(references[match.group(1)]).path + match.group(2)
            return value

        rewritten = {
            key: resolve(value) if key.endswith(("@odata.bind", "@odata.id")) else value
            for key, value in payload.items()
        }
        return json.dumps(rewritten)

    def _run(self, outer: Request, operation: Operation, references: dict[str, str], in_changeset: bool) -> Response:
        try:
            if in_changeset and operation.method == "GET":
                raise errors.bad_request(errors.INVALID_ARGUMENT, "GET requests are not allowed inside a changeset.")
            return self.dispatch(self._inner_request(outer, operation, references))
        except errors.DataverseError as exc:
            return exc.response

    def execute(self, request: Request) -> Response:
        """Answer a ``$batch`` request."""
        try:
            items = parse_batch(request.header("Content-Type") or "", request.body.decode("utf-8"))
        except (BatchFormatError, UnicodeDecodeError) as exc:
            raise errors.bad_request(errors.INVALID_ARGUMENT, f"The batch request is malformed: {exc}.") from exc
        total = sum(len(item.operations) if isinstance(item, Changeset) else 1 for item in items)
        if total > MAX_OPERATIONS:
            raise errors.bad_request(
                errors.INVALID_ARGUMENT,
                f"The number of requests in the batch ({total}) exceeds the limit of {MAX_OPERATIONS}.",
            )
        prefer = parse_prefer(request.header("Prefer"))
        boundary = f"batchresponse_{uuid.uuid4()}"
        sections: list[str] = []
        failed = False
        for item in items:
            if isinstance(item, Operation):
                response = self._run(request, item, {}, in_changeset=False)
                sections.append(render_response(response, item.content_id))
                failed = response.status >= 400
            else:
                section, failed = self._changeset(request, item)
                sections.append(section)
            if failed and not prefer.continue_on_error:
                break
        body = "".join(f"--{boundary}\r\n{section}\r\n" for section in sections) + f"--{boundary}--\r\n"
        headers = errors.odata_headers()
        if prefer.continue_on_error:
            headers["Preference-Applied"] = "odata.continue-on-error"
        status = 400 if failed and not prefer.continue_on_error else 200
        return Response(
            status, body.encode("utf-8"), {"Content-Type": f"multipart/mixed; boundary={boundary}", **headers}
        )

    def _changeset(self, request: Request, changeset: Changeset) -> tuple[str, bool]:
        """Run a changeset atomically; on failure the failing response stands for the whole changeset."""
        references: dict[str, str] = {}
        answered: list[tuple[str | None, Response]] = []
        failure: tuple[str | None, Response] | None = None

        class _RollbackError(Exception):
            pass

        try:
            with self.records.atomic():
                for operation in changeset.operations:
                    response = self._run(request, operation, references, in_changeset=True)
                    if response.status >= 400:
                        failure = (operation.content_id, response)
                        raise _RollbackError
                    answered.append((operation.content_id, response))
                    entity_id = response.headers.get("OData-EntityId")
                    if operation.content_id is not None and entity_id:
                        references[operation.content_id] = entity_id
        except _RollbackError:
            pass
        if failure is not None:
            return render_response(failure[1], failure[0]), True
        boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = "".join(f"--{boundary}\r\n{render_response(r, cid)}\r\n" for cid, r in answered)
        return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}--{boundary}--", False
