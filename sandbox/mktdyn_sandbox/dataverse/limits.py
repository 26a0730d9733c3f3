"""Service protection limits (reference §6): requests per user per sliding window, and concurrency.

The window is measured on the sandbox clock, so a test can exhaust it with a small
``requests_per_window`` and then advance the clock instead of sleeping.

A ``$batch`` is one request to the number-of-requests limit: the reference (§5.5, §6) has each of its
operations count toward the daily entitlement (the ``batch_operations`` counter in ``/_sandbox/stats``)
while service protection sees the batch. Microsoft's pages do not settle it beyond that, so the stricter
reading stays one setting away: ``batch_operations_count: true`` makes every operation take a slot of the
window (and a full window refuse the operation inside the batch), which is how a test proves the client
survives either model.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.dataverse import errors


class ServiceProtection:
    """Sliding-window request counts per user."""

    def __init__(self, clock: SandboxClock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def hit(self, user: str, limit: int, window: float) -> None:
        """Count one request, or raise the 429 when the user's window is full (refusals do not count)."""
        now = self.clock.time()
        with self._lock:
            hits = self._hits[user]
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                retry_after = max(1, math.ceil(hits[0] + window - now))
                raise errors.DataverseError(
                    429,
                    errors.REQUEST_LIMIT,
                    f"Number of requests exceeded the limit of {limit} over time window of {int(window)} seconds.",
                    {"Retry-After": str(retry_after)},
                )
            hits.append(now)

    @staticmethod
    def check_concurrency(in_flight: int, limit: int) -> None:
        """Refuse at once when more requests are in flight than the limit allows."""
        if in_flight > limit:
            raise errors.DataverseError(
                429,
                errors.CONCURRENCY_LIMIT,
                f"Number of concurrent requests exceeded the limit of {limit}.",
                {"Retry-After": "1"},
            )

    def reset(self) -> None:
        """Forget every window (used when limits are reconfigured)."""
        with self._lock:
            self._hits.clear()
