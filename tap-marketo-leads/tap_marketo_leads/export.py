r"""Bulk Lead Extract: run (or resume) one export job and stream its CSV as typed records.

The file is parsed by Python's CSV parser over the byte stream, never split on line breaks first:
real files carry NUL bytes, bare CRs, quoted newlines and ``\u2028`` inside values (reference §12).
A broken download resumes with ``Range`` from the last byte received; the whole file is checked
against Marketo's SHA-256 ``fileChecksum`` at the end.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from mktdyn_common.errors import ApiError, TransientError

from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.envelope import SYSTEM
from tap_marketo_leads.values import ValueTyper

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
FINISHED = frozenset({"Completed", "Failed", "Cancelled", "Canceled"})
#: Marketo's bulk extract limits (reference §6.1): two jobs processing, ten queued (processing included).
MAX_PROCESSING = 2
MAX_QUEUED = 10
#: A New Lead activity can be stamped a moment after the person's ``createdAt``: look back this much more.
CREATION_SLACK = timedelta(days=1)
#: Marketo's export allowance day starts at midnight US Central time (CST, UTC-6).
ALLOWANCE_DAY_OFFSET = timedelta(hours=-6)
MB = 1024 * 1024


# -- planning (pure) ---------------------------------------------------------------------------------
def month_start(moment: datetime) -> datetime:
    """The first instant (UTC) of the month holding ``moment``."""
    utc = moment.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def data_begins(start_date: datetime, first_created: datetime | None) -> datetime:
    """Where a first extraction starts: the month holding the first person, never before ``start_date``.

    Nobody can have changed before they were created, so windows before the oldest person's creation
    cannot hold anyone; paying an export job for each of them is what made a first sync grow with the
    calendar. ``None`` (the oldest creation is unknown) keeps ``start_date``: slower, never lossy.
    """
    if first_created is None:
        return start_date
    return max(start_date, month_start(first_created - CREATION_SLACK))


def plan_windows(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """Consecutive ``[start, end)`` export windows of at most ``size``, covering ``[start, end)`` exactly."""
    if size <= timedelta(0):
        raise ValueError("window size must be positive")
    windows: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        stop = min(cursor + size, end)
        windows.append((cursor, stop))
        cursor = stop
    return windows


def jobs_to_start(in_flight: int, remaining: int, depth: int) -> int:
    """How many export jobs to create now so that ``depth`` windows are in flight (Marketo's queue at most).

    ``in_flight`` counts created jobs whose records are not all emitted yet, including the window whose
    file is being read (that job has left Marketo's queue). ``depth`` 1 is one window at a time.
    """
    wanted = max(1, min(depth, MAX_QUEUED + 1)) - in_flight
    return max(0, min(wanted, remaining))


def allowance_day(moment: datetime) -> str:
    """The export-allowance day (``YYYY-MM-DD``, US Central) of a moment."""
    return (moment.astimezone(UTC) + ALLOWANCE_DAY_OFFSET).date().isoformat()


def exported_bytes_on(jobs: Iterable[dict[str, Any]], day: str) -> int:
    """Bytes of completed export files finished on allowance day ``day`` (what Marketo meters)."""
    total = 0
    for job in jobs:
        finished, size = job.get("finishedAt"), job.get("fileSize")
        if job.get("status") != "Completed" or not isinstance(finished, str) or not isinstance(size, int):
            continue
        try:
            moment = datetime.fromisoformat(finished.replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is not None and allowance_day(moment) == day:
            total += size
    return total


def projected_bytes(done_bytes: int, done_windows: int, total_windows: int) -> int | None:
    """The whole extraction's file bytes, extrapolated from the windows read so far (None before the first)."""
    if done_windows <= 0 or total_windows <= 0:
        return None
    return round(done_bytes * max(total_windows, done_windows) / done_windows)


def allowance_note(projected: int | None, used_today: int, allowance: int) -> str:
    """One sentence comparing the projected export size with what is left of today's allowance."""
    left = max(0, allowance - used_today)
    if projected is None:
        return f"{left / MB:,.1f} MB of today's {allowance / MB:,.0f} MB export allowance left"
    verdict = "fits in" if projected <= left else "EXCEEDS"
    return (
        f"projected {projected / MB:,.1f} MB {verdict} the {left / MB:,.1f} MB left of today's "
        f"{allowance / MB:,.0f} MB export allowance"
    )


# -- download --------------------------------------------------------------------------------------
def download_export(
    client: MarketoClient,
    export_id: str,
    expected_size: int | None = None,
    expected_checksum: str | None = None,
    max_resumes: int = 5,
) -> Iterator[bytes]:
    """The export file's bytes, resuming with ``Range`` when the connection breaks mid-file.

    Raises:
        TransientError: The stream broke more than ``max_resumes`` times.
        ApiError: The bytes received do not match ``fileSize`` or ``fileChecksum``.
    """
    received = 0
    digest = hashlib.sha256()
    resumes = 0
    while True:
        response = client.open_lead_export_file(export_id, received)
        try:
            skip = 0
            if received and response.status_code == 200:
                skip = received  # the server ignored Range: drop what we already have
            for raw_chunk in response.iter_content(CHUNK_BYTES):
                chunk = raw_chunk
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk = chunk[dropped:]
                    skip -= dropped
                if chunk:
                    received += len(chunk)
                    digest.update(chunk)
                    yield chunk
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
            resumes += 1
            client.retries["download-resume"] += 1
            if resumes > max_resumes:
                raise TransientError(
                    SYSTEM, f"GET export {export_id} file", "connection", f"download broke {resumes} times; last: {exc}"
                ) from exc
            logger.warning(
                "Export %s download broke at byte %d (%s); resuming", export_id, received, type(exc).__name__
            )
            continue
        finally:
            response.close()
        if expected_size is not None and received < expected_size:
            resumes += 1
            if resumes > max_resumes:
                raise ApiError(
                    SYSTEM,
                    f"GET export {export_id} file",
                    "short-file",
                    f"received {received} of {expected_size} bytes",
                )
            logger.warning("Export %s file ended at byte %d of %d; resuming", export_id, received, expected_size)
            continue
        break
    if expected_checksum and expected_checksum.startswith("sha256:"):
        actual = digest.hexdigest()
        if actual != expected_checksum.split(":", 1)[1].lower():
            raise ApiError(
                SYSTEM,
                f"GET export {export_id} file",
                "checksum",
                f"file SHA-256 {actual} does not match Marketo's {expected_checksum}",
            )


# -- CSV parsing -----------------------------------------------------------------------------------
class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks, so the text layer decodes incrementally."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _clean_lines(text: io.TextIOBase) -> Iterator[str]:
    r"""Physical lines (split on ``\n`` only) without NUL bytes or bare CRs outside quoted values.

    Lines are split on ``\n`` alone, so ``\u2028`` and a CR inside a value never end a row. A bare
    CR outside quotes would make the CSV parser stop with "new-line character seen in unquoted
    field"; it is dropped. Quote state is carried by parity: CSV doubles quotes inside values.
    """
    in_quotes = False
    for physical in text:
        line = physical.replace("\x00", "") if "\x00" in physical else physical
        body = line[:-1] if line.endswith("\n") else line
        if "\r" in body[:-1] or (body.endswith("\r") and not line.endswith("\n")):
            kept: list[str] = []
            quoted = in_quotes
            last = len(body) - 1
            for position, char in enumerate(body):
                if char == '"':
                    quoted = not quoted
                elif char == "\r" and not quoted and not (position == last and line.endswith("\n")):
                    continue
                kept.append(char)
            line = "".join(kept) + line[len(body) :]
        if line.count('"') % 2:
            in_quotes = not in_quotes
        yield line


def parse_export_csv(chunks: Iterable[bytes], typer: ValueTyper) -> Iterator[dict[str, Any]]:
    """Records from an export file's bytes: header row names the columns, values typed by ``typer``."""
    csv.field_size_limit(min(sys.maxsize, 1 << 28))  # long textarea values exceed the 128 KB default
    raw = io.BufferedReader(_ChunkStream(chunks), buffer_size=CHUNK_BYTES)
    text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")
    reader = csv.reader(_clean_lines(text))
    header = next(reader, None)
    if header is None:
        return
    if header and header[0].startswith(codecs.BOM_UTF8.decode("utf-8")):
        header[0] = header[0][1:]
    columns = [name.strip() for name in header]
    width = len(columns)
    for number, row in enumerate(reader, start=1):
        if not row or (len(row) == 1 and not row[0]):
            continue  # a blank line (trailing newline, stray CR)
        if len(row) != width:
            # An unbalanced quote swallows every row after it into one value: ignoring the mismatch would
            # lose those persons silently. Stop; the bookmark does not move, so nothing is skipped.
            raise ApiError(
                SYSTEM,
                "bulk export file",
                "invalid-export",
                f"data row {number} (id {row[0][:40]!r}) has {len(row)} values for {width} columns "
                "(an unbalanced quote or a truncated file); the export is not trusted",
            )
        yield {name: typer.from_csv(name, value) for name, value in zip(columns, row, strict=False)}


# -- the job ---------------------------------------------------------------------------------------
@dataclass
class ExportCheckpoint:
    """An export job the stream has started, kept in the stream state so a rerun resumes it."""

    export_id: str
    start: str
    end: str
    fields: list[str]

    def to_state(self) -> dict[str, Any]:
        """The JSON form stored in the state."""
        return {"id": self.export_id, "start": self.start, "end": self.end, "fields": self.fields}

    @classmethod
    def from_state(cls, value: Any) -> ExportCheckpoint | None:
        """Read it back; None when the state has no (or an unreadable) export."""
        if not isinstance(value, dict) or not value.get("id"):
            return None
        try:
            return cls(str(value["id"]), str(value["start"]), str(value["end"]), [str(f) for f in value["fields"]])
        except (KeyError, TypeError):
            return None


class ExportFailedError(ApiError):
    """The job ended Failed or Cancelled, or vanished; the window has to be exported again."""


class LeadExporter:
    """Creates, enqueues, waits for and downloads lead export jobs."""

    def __init__(
        self,
        client: MarketoClient,
        poll_interval: float,
        max_wait_seconds: float = 6 * 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._poll_interval = max(0.0, poll_interval)
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._clock = clock

    def start(self, fields: list[str], start: datetime, end: datetime) -> str:
        """Create and enqueue an export for persons changed in ``[start, end)``; return its id.

        When Marketo's queue is full (other integrations' jobs), the job stays ``Created`` and is
        enqueued by a later :meth:`enqueue` or :meth:`wait`.
        """
        export_id = self._client.create_lead_export(fields, start, end)
        self.enqueue(export_id)
        return export_id

    def enqueue(self, export_id: str) -> bool:
        """Put a created job in Marketo's queue; False when the queue is full (try again later)."""
        try:
            self._client.enqueue_lead_export(export_id)
        except ApiError as exc:
            message = exc.api_message.lower()
            if exc.code == "1029" and "already" in message:
                return True  # enqueued by an earlier, interrupted run
            if exc.code == "1029" and "queue" in message and "quota" not in message:
                logger.info("Marketo's export queue is full; export %s waits to be enqueued", export_id)
                return False
            raise
        return True

    def wait(self, export_id: str) -> dict[str, Any]:
        """Poll until the job completes; return its final job record.

        Raises:
            ExportFailedError: Failed, Cancelled, or still unfinished after ``max_wait_seconds``.
        """
        deadline = self._clock() + self._max_wait
        while True:
            job = self._client.lead_export_status(export_id)
            status = str(job.get("status", ""))
            if status == "Created":
                self.enqueue(export_id)  # created but never enqueued (interrupted, or the queue was full)
            elif status == "Completed":
                return job
            elif status in FINISHED:
                raise ExportFailedError(
                    SYSTEM, f"export {export_id}", status, str(job.get("errorMsg") or f"the export job ended {status}")
                )
            if self._clock() > deadline:
                raise ExportFailedError(
                    SYSTEM, f"export {export_id}", "timeout", f"still {status} after {self._max_wait:.0f} s"
                )
            logger.info("Export %s is %s; next status check in %.1f s", export_id, status, self._poll_interval)
            self._sleep(self._poll_interval)

    def records(self, export_id: str, job: dict[str, Any], typer: ValueTyper) -> Iterator[dict[str, Any]]:
        """The completed export's persons, typed."""
        size = job.get("fileSize")
        chunks = download_export(
            self._client,
            export_id,
            expected_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            expected_checksum=job.get("fileChecksum"),
        )
        yield from parse_export_csv(chunks, typer)

    def cancel_quietly(self, export_id: str) -> None:
        """Cancel an export we will not use (best effort: it only frees a queue slot)."""
        try:
            self._client.cancel_lead_export(export_id)
        except ApiError as exc:
            logger.info("Could not cancel export %s (%s); it will expire on its own", export_id, exc)
