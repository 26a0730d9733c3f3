"""Request and write counters, so tests and benchmarks can assert on API economy."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters of one server: requests per endpoint and kind, records written, faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._written: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._events: Counter[str] = Counter()

    def count_request(self, endpoint: str, kind: str) -> None:
        """Count one request to ``endpoint`` of ``kind`` (read, write, auth, metadata, admin)."""
        with self._lock:
            self._requests[endpoint] += 1
            self._kinds[kind] += 1

    def count_written(self, what: str, n: int = 1) -> None:
        """Count records written through the API (``created``, ``updated``, ``deleted``, ...)."""
        with self._lock:
            self._written[what] += n

    def count_rejected(self, reason: str) -> None:
        """Count a request refused by a limit or an injected fault."""
        with self._lock:
            self._rejected[reason] += 1

    def count_event(self, what: str, n: int = 1) -> None:
        """Count anything else worth asserting on (``exports_created``, ``tokens_issued``, ...)."""
        with self._lock:
            self._events[what] += n

    def record_peak(self, what: str, value: int) -> None:
        """Keep the highest ``value`` seen for ``what`` (``exports_peak_processing``, ...)."""
        with self._lock:
            self._events[what] = max(self._events[what], value)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "requests_by_kind": dict(self._kinds),
                "records_written": dict(self._written),
                "records_written_total": sum(self._written.values()),
                "rejected": dict(self._rejected),
                **dict(self._events),
            }

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests.clear()
            self._kinds.clear()
            self._written.clear()
            self._rejected.clear()
            self._events.clear()
