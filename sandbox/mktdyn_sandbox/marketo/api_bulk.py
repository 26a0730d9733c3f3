"""HTTP handlers of the bulk lead export: create, enqueue, status, file (with Range), cancel, list."""

from __future__ import annotations

import re
from collections.abc import Callable

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.marketo.envelope import fail, ok
from mktdyn_sandbox.marketo.exports import ExportJob, ExportJobs, ExportRequestError
from mktdyn_sandbox.marketo.params import batch_size, decode_position, encode_position, json_object
from mktdyn_sandbox.web import Request, Response

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """The inclusive range asked for, None for the whole file, "invalid" when unsatisfiable."""
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return None  # a Range form we do not serve partially: send the whole file, as servers may
    first, last = found.group(1), found.group(2)
    if not first:  # suffix form: the last N bytes
        length = int(last)
        if length == 0:
            return "invalid"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "invalid"
    return start, end


class BulkApi:
    """``/bulk/v1/leads/export...`` endpoints."""

    def __init__(self, jobs: ExportJobs, clock: SandboxClock) -> None:
        self.jobs = jobs
        self.clock = clock

    def _job_call(self, action: Callable[[], ExportJob]) -> Response:
        now = self.clock.time()
        try:
            job = action()
        except ExportRequestError as exc:
            fail(now, exc.code, exc.message)
        return ok(now, [job.view()])

    def create(self, request: Request) -> Response:
        """A new job in ``Created``."""
        body = json_object(request, self.clock.time())
        return self._job_call(lambda: self.jobs.create(body))

    def enqueue(self, request: Request, export_id: str) -> Response:
        """Created -> Queued."""
        return self._job_call(lambda: self.jobs.enqueue(export_id))

    def cancel(self, request: Request, export_id: str) -> Response:
        """Stop a job."""
        return self._job_call(lambda: self.jobs.cancel(export_id))

    def status(self, request: Request, export_id: str) -> Response:
        """Poll a job."""
        now = self.clock.time()
        try:
            view = self.jobs.status(export_id)
        except ExportRequestError as exc:
            fail(now, exc.code, exc.message)
        return ok(now, [view])

    def listing(self, request: Request) -> Response:
        """Jobs of the last seven days, filtered by ``status``, position-paged."""
        now = self.clock.time()
        size = batch_size(request, now)
        start = decode_position(request, "exports", now)
        jobs = self.jobs.listing(request.params("status"))
        page = jobs[start : start + size]
        extra = {"nextPageToken": encode_position("exports", start + size)} if start + size < len(jobs) else {}
        return ok(now, [job.view() for job in page], **extra)

    def file(self, request: Request, export_id: str) -> Response:
        """The file of a completed job (404 plain text otherwise); ``Range`` gives 206."""
        path = self.jobs.completed_file(export_id)
        if path is None:
            return Response.text("Export file not found", status=404)
        size = path.stat().st_size
        headers = {"Content-Type": "text/csv;charset=UTF-8", "Accept-Ranges": "bytes"}
        wanted = byte_range(request.header("Range"), size)
        if wanted == "invalid":
            return Response(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
        if isinstance(wanted, tuple):
            start, end = wanted
            return Response(
                206,
                headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}"},
                file=path,
                file_range=(start, end),
            )
        return Response(200, headers=headers, file=path)
