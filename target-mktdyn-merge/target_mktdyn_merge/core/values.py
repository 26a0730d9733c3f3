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


def _moment(value: Any) -> datetime | None:
    """A datetime, or an ISO 8601 string (a trailing Z allowed), as a datetime; None when it is neither."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def timestamp_text(value: Any) -> str:
    """A source timestamp (datetime or ISO string) as sortable UTC text; '' when absent; other text as it is."""
    if value is None or value == "":
        return ""
    moment = _moment(value)
    return utc_iso(moment) if moment is not None else str(value).strip()


def utc_text(value: Any) -> str | None:
    """A timestamp (datetime or ISO string) as sortable UTC text; None when absent or not a usable timestamp.

    A year before 1000 is not usable: ``strftime`` does not pad it, so its text would sort after every other.
    """
    moment = _moment(value) if value is not None and value != "" else None
    text = utc_iso(moment) if moment is not None else ""
    return text if len(text) == len("2026-01-01T00:00:00Z") else None


def earliest_iso(moment: str, other: Any) -> str:
    """The earlier of ``moment`` (UTC ISO text) and ``other`` (an ISO timestamp), unless ``other`` is unreadable."""
    theirs = utc_text(other) if isinstance(other, str | datetime) else None
    return theirs if theirs is not None and theirs < moment else moment


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
