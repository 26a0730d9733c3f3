"""Progress of a long step at INFO on stderr: planning a million changed records must not be silent for minutes.

A line when another tenth of the work is done or :data:`EVERY_SECONDS` have passed since the last one, so a
small run says one or two lines and a large one a line every few seconds, with the rate and what is left.
"""

from __future__ import annotations

import logging
import time

EVERY_SECONDS = 15.0


class Progress:
    """Counts done out of a total and logs how far along a step is, at most every tenth or every few seconds."""

    def __init__(self, logger: logging.Logger, step: str, total: int, unit: str = "records") -> None:
        self.logger = logger
        self.step = step
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = self.last = time.monotonic()
        self.last_tenth = 0

    def advance(self, count: int) -> None:
        """Note ``count`` more done; log when a tenth more is done or the last line is old."""
        self.done += count
        now = time.monotonic()
        tenth = self.done * 10 // self.total if self.total else 10
        if tenth > self.last_tenth or now - self.last >= EVERY_SECONDS:
            self.last_tenth, self.last = tenth, now
            elapsed = max(now - self.started, 1e-3)
            share = f" ({self.done / self.total:.0%})" if self.total else ""
            self.logger.info(
                "%s: %d of %d %s%s in %.1f s, %.0f/s",
                self.step,
                self.done,
                self.total,
                self.unit,
                share,
                elapsed,
                self.done / elapsed,
            )
