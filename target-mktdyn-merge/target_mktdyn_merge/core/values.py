"""JSON-safe values: the SDK hands sinks ``datetime`` objects for date-time strings (docs/architecture.md §8)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


def utc_iso(moment: datetime) -> str:
    """A datetime as UTC ISO-8601 with a Z, second precision (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_text(value: Any) -> str:
    """A source timestamp (datetime or ISO string) as sortable UTC text; '' when absent."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return utc_iso(value)
    text = str(value).strip()
    try:
        return utc_iso(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def earliest_iso(moment: str, other: Any) -> str:
    """The earlier of ``moment`` (UTC ISO text) and ``other`` (an ISO timestamp), unless ``other`` is unreadable."""
    if not isinstance(other, str | datetime):
        return moment
    try:
        theirs = other if isinstance(other, datetime) else datetime.fromisoformat(other.strip().replace("Z", "+00:00"))
        ours = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return moment
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    return utc_iso(theirs) if theirs < ours else moment


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value: Any) -> str:
    """Compact, deterministic JSON (sorted keys) so equal content compares equal as text."""
    return json.dumps(value, default=_default, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def now_iso() -> str:
    """The current time as UTC ISO text."""
    return utc_iso(datetime.now(UTC))
