"""Retry timing: exponential backoff with jitter, and the APIs' own "wait this long" signals."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass
class Backoff:
    """Exponential delays with full jitter, capped; ``attempts`` bounds how many retries are allowed."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 6
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * (2.0 ** (attempt - 1)))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (moment - current).total_seconds())
