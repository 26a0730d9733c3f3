"""A shared, adjustable clock, so tests can expire tokens and delta links without sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SandboxClock:
    """Wall-clock time plus an offset that the admin API can advance.

    Both servers of one sandbox share one clock, so "advance 8 days" expires Marketo tokens and
    Dataverse delta tokens alike.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch, as the sandbox sees it."""
        with self._lock:
            return time.time() + self._offset

    def now(self) -> datetime:
        """The sandbox's current time, timezone-aware UTC."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never backward) and return the new offset."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
            return self._offset

    @property
    def offset(self) -> float:
        """How far the sandbox runs ahead of the wall clock, in seconds."""
        with self._lock:
            return self._offset


def iso_z(moment: datetime) -> str:
    """Format a UTC datetime the way both APIs do: second precision with a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
