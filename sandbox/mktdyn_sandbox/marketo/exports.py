"""Bulk lead export jobs: Created -> Queued -> Processing -> Completed, driven by the sandbox clock.

A job waits ``export_delay`` seconds in each of Queued and Processing (at most two Processing, ten
queued including those), and completes only once its file is fully written. Files are produced by a
worker thread that streams persons from a private read-only SQLite connection into
``DIR/exports/<id>.csv``, hashing as it writes, so memory stays flat for a million rows. Empty values
are the literal ``null``; with ``export_file_noise`` on, NUL bytes and bare CRs are sprinkled between
values as real export files have them (clients are expected to strip both).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.db import Database
from mktdyn_sandbox.marketo.fields import FIELDS, parse_datetime
from mktdyn_sandbox.marketo.limits import quota_day
from mktdyn_sandbox.marketo.store import PersonStore, iso_from_ts, run_script, stream_for_export
from mktdyn_sandbox.stats import Stats

FORMATS = {"CSV": ",", "TSV": "\t", "SSV": " "}
DATE_FILTERS = ("createdAt", "updatedAt")
LIST_FILTERS = ("staticListId", "staticListName")
SMART_LIST_FILTERS = ("smartListId", "smartListName")
MAX_RANGE = timedelta(days=31)
JOB_LIST_DAYS = 7
ACTIVE = ("Queued", "Processing")

SCHEMA = """
CREATE TABLE IF NOT EXISTS export_jobs (
    export_id TEXT PRIMARY KEY,
    created_ts REAL NOT NULL,
    job TEXT NOT NULL
);
"""


class ExportRequestError(ValueError):
    """A refused export request, with the Marketo code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ExportJob:
    """One leads export job as stored."""

    export_id: str
    format: str
    fields: list[str]
    headers: dict[str, str]
    filter_sql: str
    filter_params: list[Any]
    created_ts: float
    status: str = "Created"
    queued_ts: float | None = None
    started_ts: float | None = None
    finished_ts: float | None = None
    records: int | None = None
    file_size: int | None = None
    checksum: str | None = None
    error_msg: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """The job as create/enqueue/status/cancel/list return it."""
        item: dict[str, Any] = {
            "exportId": self.export_id,
            "format": self.format,
            "status": self.status,
            "createdAt": iso_from_ts(self.created_ts),
        }
        for key, ts in (("queuedAt", self.queued_ts), ("startedAt", self.started_ts), ("finishedAt", self.finished_ts)):
            if ts is not None:
                item[key] = iso_from_ts(ts)
        if self.status == "Completed":
            item.update(numberOfRecords=self.records, fileSize=self.file_size, fileChecksum=self.checksum)
        if self.status == "Failed":
            item["errorMsg"] = self.error_msg
        return item


def csv_value(value: Any) -> str:
    """A value as Marketo writes it into an export: empty is ``null``, booleans lower-case."""
    if value is None or value == "":
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def quote(text: str, delimiter: str) -> str:
    """RFC 4180 quoting: wrap when the text holds the delimiter, a quote, CR or LF."""
    if delimiter in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


class ExportJobs:
    """The job table, the state machine and the file workers."""

    def __init__(
        self,
        db: Database,
        store: PersonStore,
        clock: SandboxClock,
        directory: Path,
        settings: Callable[[], dict[str, Any]],
        delay: float,
        stats: Stats,
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.directory = directory / "exports"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.delay = delay
        self.stats = stats
        self._lock = threading.RLock()
        self._workers: dict[str, threading.Thread] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._reported: dict[str, tuple[float, dict[str, Any]]] = {}
        run_script(db, SCHEMA)
        self._jobs: dict[str, ExportJob] = {}
        for row in db.query("SELECT job FROM export_jobs ORDER BY created_ts"):
            job = ExportJob(**json.loads(row[0]))
            if job.status == "Processing":  # the worker died with the previous process: redo it
                job.status, job.started_ts = "Queued", None
            self._jobs[job.export_id] = job

    # -- persistence --------------------------------------------------------------------------------
    def _save(self, job: ExportJob) -> None:
        self.db.execute(
            "INSERT INTO export_jobs VALUES (?,?,?) ON CONFLICT(export_id) DO UPDATE SET job = excluded.job",
            (job.export_id, job.created_ts, json.dumps(asdict(job))),
        )

    def file_path(self, export_id: str) -> Path:
        """Where a job's file lives."""
        return self.directory / f"{export_id}.csv"

    # -- validation ---------------------------------------------------------------------------------
    def _filter(self, raw: Any) -> tuple[str, list[Any]]:
        if not isinstance(raw, dict) or not raw:
            raise ExportRequestError("1003", "filter is required")
        unknown = [key for key in raw if key not in DATE_FILTERS + LIST_FILTERS + SMART_LIST_FILTERS]
        if unknown:
            raise ExportRequestError("1003", f"Invalid filter type '{unknown[0]}'")
        if len(raw) > 1:
            raise ExportRequestError("1003", "Only one filter type is allowed per export job")
        kind, value = next(iter(raw.items()))
        if kind in SMART_LIST_FILTERS or (kind == "updatedAt" and not self.settings()["updated_at_filter"]):
            raise ExportRequestError("1035", "Unsupported filter type for target subscription")
        if kind in DATE_FILTERS:
            if not isinstance(value, dict) or not value.get("startAt") or not value.get("endAt"):
                raise ExportRequestError("1003", f"{kind} filter needs startAt and endAt")
            try:
                start, end = parse_datetime(str(value["startAt"])), parse_datetime(str(value["endAt"]))
            except ValueError as exc:
                raise ExportRequestError("1003", f"Invalid date in {kind} filter") from exc
            if end < start:
                raise ExportRequestError("1003", f"{kind} endAt is before startAt")
            if end - start > MAX_RANGE:
                raise ExportRequestError("1003", f"{kind} date range exceeds 31 days")
            column = "created_ts" if kind == "createdAt" else "changed_ts"
            # Marketo stamps changes to the second: a change at 12:00:05.4 is a 12:00:05 change, inside a
            # window ending at 12:00:05. Compared on the stored fraction, it fell out of that window (and into
            # only the next run's overlap). Bounds on the raw column keep the index usable.
            return f"{column} >= ? AND {column} < ?", [math.floor(start.timestamp()), math.floor(end.timestamp()) + 1]
        list_id = self.store.list_by_name(str(value)) if kind == "staticListName" else None
        if kind == "staticListId":
            try:
                list_id = int(value)
            except (TypeError, ValueError):
                list_id = None
            if list_id is not None and not self.store.list_exists(list_id):
                list_id = None
        if list_id is None:
            raise ExportRequestError("1003", f"Static list not found: {value}")
        return "id IN (SELECT lead_id FROM list_members WHERE list_id = ?)", [list_id]

    def _check_quota(self, now: float) -> None:
        quota_mb = float(self.settings()["export_daily_quota_mb"])
        today = quota_day(now)
        used = sum(
            job.file_size or 0
            for job in self._jobs.values()
            if job.status == "Completed" and job.finished_ts is not None and quota_day(job.finished_ts) == today
        )
        if used >= quota_mb * 1024 * 1024:
            shown = int(quota_mb) if quota_mb == int(quota_mb) else quota_mb
            raise ExportRequestError("1029", f"Export daily quota {shown}MB exceeded")

    # -- operations ---------------------------------------------------------------------------------
    def create(self, body: Any) -> ExportJob:
        """Validate and store a new job in ``Created``."""
        if not isinstance(body, dict):
            raise ExportRequestError("1003", "Invalid request body")
        fields = body.get("fields")
        if not isinstance(fields, list) or not fields or not all(isinstance(name, str) for name in fields):
            raise ExportRequestError("1003", "fields is required")
        unknown = [name for name in fields if name not in FIELDS]
        if unknown:
            raise ExportRequestError("1003", f"Invalid fields [{', '.join(unknown)}]")
        export_format = str(body.get("format") or "CSV").upper()
        if export_format not in FORMATS:
            raise ExportRequestError("1003", f"Invalid format '{export_format}'")
        headers = body.get("columnHeaderNames") or {}
        if not isinstance(headers, dict):
            raise ExportRequestError("1003", "columnHeaderNames must be an object")
        where, params = self._filter(body.get("filter"))
        now = self.clock.time()
        with self._lock:
            self._check_quota(now)
            job = ExportJob(
                str(uuid.uuid4()),
                export_format,
                list(fields),
                {str(k): str(v) for k, v in headers.items()},
                where,
                params,
                now,
            )
            self._jobs[job.export_id] = job
            self._save(job)
        self.stats.count_event("exports_created")
        return job

    def get(self, export_id: str) -> ExportJob:
        """A job by id (after moving the state machine); 1003 when unknown."""
        with self._lock:
            self.advance()
            job = self._jobs.get(export_id)
            if job is None:
                raise ExportRequestError("1003", f"Export id {export_id} not found")
            return job

    def enqueue(self, export_id: str) -> ExportJob:
        """Created -> Queued (1029 when the queue is full or the job is already queued)."""
        with self._lock:
            job = self.get(export_id)
            if job.status in ACTIVE:
                raise ExportRequestError("1029", "Job already queued")
            if job.status != "Created":
                raise ExportRequestError("1003", f"Job is {job.status} and cannot be enqueued")
            now = self.clock.time()
            self._check_quota(now)
            if sum(1 for other in self._jobs.values() if other.status in ACTIVE) >= int(
                self.settings()["export_max_queued"]
            ):
                raise ExportRequestError("1029", "Too many jobs in queue")
            job.status, job.queued_ts = "Queued", now
            self._save(job)
            self.advance()
            self._record_peaks()
            return job

    def cancel(self, export_id: str) -> ExportJob:
        """Stop a job that has not finished (a finished job is returned unchanged)."""
        with self._lock:
            job = self.get(export_id)
            if job.status in ("Created", *ACTIVE):
                self.stats.count_event("exports_cancelled")
                job.status = "Cancelled"
                event = self._cancel.get(export_id)
                if event is not None:
                    event.set()
                self._save(job)
            return job

    def status(self, export_id: str) -> dict[str, Any]:
        """The job's view; with ``export_status_interval`` it changes at most once per interval."""
        with self._lock:
            job = self.get(export_id)
            now = self.clock.time()
            interval = float(self.settings()["export_status_interval"])
            cached = self._reported.get(export_id)
            if interval > 0 and cached is not None and now - cached[0] < interval and job.status != "Cancelled":
                return cached[1]
            view = job.view()
            self._reported[export_id] = (now, view)
            return view

    def listing(self, statuses: list[str]) -> list[ExportJob]:
        """Jobs of the last seven days, optionally only in the given statuses (``Canceled`` accepted)."""
        wanted = {("Cancelled" if s.capitalize() == "Canceled" else s.capitalize()) for s in statuses}
        with self._lock:
            self.advance()
            since = self.clock.time() - JOB_LIST_DAYS * 86400
            return [
                job for job in self._jobs.values() if job.created_ts >= since and (not wanted or job.status in wanted)
            ]

    def completed_file(self, export_id: str) -> Path | None:
        """The file of a completed job, or None (unknown id, not complete yet, file gone)."""
        with self._lock:
            self.advance()
            job = self._jobs.get(export_id)
            if job is None or job.status != "Completed":
                return None
            path = self.file_path(export_id)
            return path if path.exists() else None

    # -- state machine ------------------------------------------------------------------------------
    def advance(self) -> None:
        """Move every active job as far as the clock, the slots and its worker allow."""
        now = self.clock.time()
        with self._lock:
            for job in sorted(self._jobs.values(), key=lambda j: j.queued_ts or 0.0):
                if job.status == "Processing" and self._finished(job) and now >= (job.started_ts or now) + self.delay:
                    job.status = "Failed" if job.error_msg else "Completed"
                    job.finished_ts = now
                    self._workers.pop(job.export_id, None)
                    self._save(job)
            processing = sum(1 for job in self._jobs.values() if job.status == "Processing")
            for job in sorted(self._jobs.values(), key=lambda j: j.queued_ts or 0.0):
                if processing >= int(self.settings()["export_max_processing"]):
                    break
                if job.status == "Queued" and now >= (job.queued_ts or now) + self.delay:
                    job.status, job.started_ts = "Processing", now
                    processing += 1
                    self._save(job)
                    self._start_worker(job)
            self._record_peaks()

    def _record_peaks(self) -> None:
        """The most jobs ever processing and active at once, so tests can check the limits held."""
        processing = sum(1 for job in self._jobs.values() if job.status == "Processing")
        active = sum(1 for job in self._jobs.values() if job.status in ACTIVE)
        self.stats.record_peak("exports_peak_processing", processing)
        self.stats.record_peak("exports_peak_active", active)

    def _finished(self, job: ExportJob) -> bool:
        worker = self._workers.get(job.export_id)
        return worker is None or not worker.is_alive()

    def _start_worker(self, job: ExportJob) -> None:
        cancel = threading.Event()
        self._cancel[job.export_id] = cancel
        noise = bool(self.settings()["export_file_noise"])
        worker = threading.Thread(
            target=self._write_file, args=(job, cancel, noise), name=f"marketo-export-{job.export_id[:8]}", daemon=True
        )
        self._workers[job.export_id] = worker
        worker.start()

    def _rows(self, job: ExportJob, noise: bool) -> Iterator[str]:
        delimiter = FORMATS[job.format]
        yield delimiter.join(quote(job.headers.get(name, name), delimiter) for name in job.fields) + "\n"
        persons = stream_for_export(str(self.db.path), job.filter_sql, job.filter_params)
        for index, person in enumerate(persons, start=1):
            values = [quote(csv_value(person.get(name)), delimiter) for name in job.fields]
            if noise and index % 7 == 3:
                values[0] += "\x00"
            if noise and index % 11 == 5:
                values[min(1, len(values) - 1)] += "\r"
            yield delimiter.join(values) + "\n"

    def _write_file(self, job: ExportJob, cancel: threading.Event, noise: bool) -> None:
        """Stream the job's rows to disk, hashing as it goes (runs in a worker thread)."""
        path = self.file_path(job.export_id)
        partial = path.with_suffix(".part")
        digest = hashlib.sha256()
        size = records = 0
        try:
            with partial.open("wb") as handle:
                for line_number, line in enumerate(self._rows(job, noise)):
                    if cancel.is_set():
                        break
                    data = line.encode("utf-8")
                    digest.update(data)
                    handle.write(data)
                    size += len(data)
                    records = line_number
            if cancel.is_set():
                partial.unlink(missing_ok=True)
                return
            partial.replace(path)
            with self._lock:
                job.records, job.file_size, job.checksum = records, size, f"sha256:{digest.hexdigest()}"
        except Exception as exc:  # a failed job reports errorMsg rather than killing the server
            partial.unlink(missing_ok=True)
            with self._lock:
                job.error_msg = f"Export failed: {exc}"

    def close(self) -> None:
        """Stop the workers (their partial files are removed)."""
        with self._lock:
            for event in self._cancel.values():
                event.set()
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout=5)
