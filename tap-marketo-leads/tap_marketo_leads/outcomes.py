"""Per-record results of Marketo write calls, as plain data the target can log and act on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mktdyn_common.errors import ApiError

from tap_marketo_leads.envelope import SYSTEM, record_reasons


@dataclass(frozen=True)
class RecordOutcome:
    """What Marketo did with one input record.

    Attributes:
        index: Position of the record in the caller's input (across all batches).
        status: Marketo's word: ``created``, ``updated``, ``skipped``, ``deleted``, ``added``.
        id: The person id (leads) or activity id (custom activities), when Marketo gave one.
        reasons: ``(code, message)`` pairs explaining a skip, e.g. ``("1004", "Lead not found")``.
        marketo_guid: The activity's ``marketoGUID`` (custom activities only).
    """

    index: int
    status: str
    id: int | None
    reasons: tuple[tuple[str, str], ...] = ()
    marketo_guid: str | None = None

    @property
    def ok(self) -> bool:
        """Whether Marketo applied the record."""
        return self.status != "skipped"


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def outcomes_from_result(result: Sequence[Any], offset: int, expected: int, request: str) -> list[RecordOutcome]:
    """Map a write call's ``result`` array (in input order) to outcomes numbered from ``offset``.

    Raises:
        ApiError: When Marketo returned a different number of results than records sent, since the
            positional pairing would then silently attach outcomes to the wrong records.
    """
    if len(result) != expected:
        raise ApiError(
            SYSTEM,
            request,
            "result-count",
            f"sent {expected} records but received {len(result)} results; outcomes cannot be paired",
        )
    outcomes: list[RecordOutcome] = []
    for position, item in enumerate(result):
        entry = item if isinstance(item, dict) else {}
        guid = entry.get("marketoGUID")
        outcomes.append(
            RecordOutcome(
                index=offset + position,
                status=str(entry.get("status", "skipped")),
                id=_as_int(entry.get("id")),
                reasons=record_reasons(entry),
                marketo_guid=None if guid is None else str(guid),
            )
        )
    return outcomes
