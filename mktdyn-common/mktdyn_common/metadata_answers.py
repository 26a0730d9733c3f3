"""Where an API client may keep its metadata answers between runs (the target keeps them in its store).

A run on a five-minute schedule asked both systems for the same field metadata every time: 21 requests a run
(Dataverse lists a table's columns, then one request per column type for lengths, ranges and options), which
real Dataverse answers slowly. Metadata changes when an administrator changes a field, rarely; a client given
``MetadataAnswers`` asks it first and stores what the API answered. How long an answer stays good is the
keeper's business (the target: ``metadata_max_age_minutes``).
"""

from __future__ import annotations

from typing import Any, Protocol


class MetadataAnswers(Protocol):
    """A keeper of metadata answers (JSON bodies) by request."""

    def get(self, key: str) -> Any | None:
        """The answer kept for ``key`` while still good, else None."""

    def put(self, key: str, body: Any) -> None:
        """Keep the API's answer for ``key``."""
