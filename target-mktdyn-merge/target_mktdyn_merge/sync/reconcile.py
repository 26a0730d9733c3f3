"""Key reconciliation, bounded and confirmed (docs/architecture.md §4, §10: "Losses and mass changes stop").

A full extraction (closed by ACTIVATE_VERSION) that did not return a staged record says the record is gone.
It can also be wrong: a full re-read by an application user whose security role now sees fewer rows, or a
tap that stopped early, returns a fraction of the rows, and treating the rest as deleted unlinks pairs and,
under a ``delete`` policy, deletes the other system's records. So:

- a bound: at most ``max_reconcile_deletes`` records, and at most ``max_reconcile_share`` of the stream's live
  staged records (checked only past :data:`SHARE_FLOOR` records: a share of a handful means nothing), may be
  found missing in one run. Past it the run marks nothing, writes nothing to either system and exits non-zero
  with one line saying why and how to proceed;
- a confirmation: each record within the bound is read directly by id (Dataverse GET by id, Marketo
  ``leads.json`` by id) and only a record the API says does not exist is marked deleted. One still there is
  left live (and logged): it is just not visible to that extraction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mktdyn_common.errors import MktdynError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from target_mktdyn_merge.core.vocabulary import ENTITY_SET, STREAMS

#: Up to this many missing records the share is not checked (only the count is).
SHARE_FLOOR = 5


class ReconcileBoundError(MktdynError):
    """A full extraction missed more records than one run may treat as deleted."""


@dataclass(frozen=True)
class ReconcileBounds:
    """How many records one run may find deleted by key reconciliation, per stream."""

    max_deletes: int
    max_share: float

    def check(self, stream: str, missing: int, live: int) -> None:
        """Raise :class:`ReconcileBoundError` when ``missing`` of ``live`` records exceeds a bound."""
        share = missing / live if live else 1.0
        if missing > self.max_deletes:
            broken = f"more than max_reconcile_deletes={self.max_deletes}"
        elif missing > SHARE_FLOOR and share > self.max_share:
            broken = f"{share:.0%} of them, more than max_reconcile_share={self.max_share:g}"
        else:
            return
        raise ReconcileBoundError(
            f"key reconciliation stopped: the full extraction of {stream} did not return {missing} of its {live} "
            f"staged record(s) ({broken}); nothing was marked deleted and nothing was written to either system. "
            "If they really were deleted, raise the setting for one run; if not, check what the extraction can "
            "see (the application user's security role)"
        )


def still_present(
    marketo_connection: Callable[[], MarketoConnection],
    dynamics_connection: Callable[[], DataverseConnection],
    stream: str,
    record_ids: Sequence[str],
) -> set[str]:
    """The records of ``record_ids`` that the source system still has, read directly by id."""
    spec = STREAMS[stream]
    if not record_ids:
        return set()
    if spec.system == "dynamics":
        dynamics = DataverseClient(dynamics_connection())
        try:
            rows = dynamics.find_by_ids(ENTITY_SET[spec.entity], spec.key, record_ids, [spec.key])
            found = {str(row[spec.key]).lower() for row in rows}
            return {record_id for record_id in record_ids if record_id.lower() in found}
        finally:
            dynamics.close()
    marketo = MarketoClient(marketo_connection())
    try:
        return {str(person["id"]) for person in marketo.get_leads("id", record_ids, ["id"])} & set(record_ids)
    finally:
        marketo.close()
