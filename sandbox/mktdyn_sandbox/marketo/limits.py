"""Marketo's call limits: 100 calls per 20 s (606), 10 in flight (615), a daily quota (607).

A call is admitted (and metered) before its handler runs so that parallel callers see each other, and
refunded when it fails, since failed calls do not count against the rate window or the daily quota.
The quota day starts at midnight US Central (CST, UTC-6), when Marketo resets it. The same daily
counts feed ``stats/usage.json``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mktdyn_sandbox.marketo.envelope import MESSAGES

CST = timedelta(hours=-6)


def quota_day(now: float) -> str:
    """The quota day (``YYYY-MM-DD``) a moment belongs to."""
    return (datetime.fromtimestamp(now, tz=UTC) + CST).date().isoformat()


@dataclass(frozen=True)
class Ticket:
    """An admitted call, to be refunded if it fails."""

    at: float
    day: str


class CallLimits:
    """Sliding-window rate limit, concurrency limit and daily quota, read from live settings."""

    def __init__(self, settings: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._daily: Counter[str] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()

    def admit(self, now: float, in_flight: int) -> tuple[Ticket | None, tuple[str, str] | None]:
        """Meter one call: a ticket when admitted, else the (code, message) to refuse it with."""
        settings = self._settings()
        enforce = bool(settings["limits"])
        with self._lock:
            day = quota_day(now)
            window = float(settings["rate_limit_window"])
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if enforce:
                if self._daily[day] >= int(settings["daily_quota"]):
                    return None, ("607", MESSAGES["607"])
                calls = int(settings["rate_limit_calls"])
                if len(self._window) >= calls:
                    return None, ("606", f"Max rate limit '{calls}' exceeded with in '{int(window)}' secs")
                concurrency = int(settings["concurrency_limit"])
                if in_flight > concurrency:
                    return None, ("615", f"Concurrent access limit '{concurrency}' reached")
            self._window.append(now)
            self._daily[day] += 1
            return Ticket(now, day), None

    def refund(self, ticket: Ticket) -> None:
        """Take back a call that failed."""
        with self._lock:
            with contextlib.suppress(ValueError):  # already slid out of the window
                self._window.remove(ticket.at)
            if self._daily[ticket.day] > 0:
                self._daily[ticket.day] -= 1

    def record_error(self, now: float, code: str) -> None:
        """Count an error answer for ``stats/errors.json``."""
        with self._lock:
            self._errors[(quota_day(now), code)] += 1

    def usage(self, days: list[str]) -> list[dict[str, Any]]:
        """Calls per quota day, newest first, in the ``stats/usage.json`` shape."""
        with self._lock:
            return [
                {
                    "date": day,
                    "total": self._daily[day],
                    "users": [{"userId": "mktdyn.api@sandbox.example", "count": self._daily[day]}],
                }
                for day in days
            ]

    def errors(self, days: list[str]) -> list[dict[str, Any]]:
        """Error answers per quota day, in the ``stats/errors.json`` shape."""
        with self._lock:
            result = []
            for day in days:
                codes = sorted((code, n) for (d, code), n in self._errors.items() if d == day)
                result.append(
                    {
                        "date": day,
                        "total": sum(n for _, n in codes),
                        "errors": [{"errorCode": code, "count": n} for code, n in codes],
                    }
                )
            return result
