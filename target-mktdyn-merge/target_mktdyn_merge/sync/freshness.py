"""Re-read records written since they were extracted, before the merge compares them (docs/architecture.md §10).

"No run writes from data older than what the store confirmed." Two runs overlap on one store (two workers,
a retry, a manual run): the second one's taps may extract a record *before* the first one writes it back,
and stage that old version after. Compared with the baseline the first run just moved, the old values look
like the user's edits and would be written over the newer ones: an edit reverted. A lock taken by the
staging target cannot prevent it, since the tap reads before (or while) the target stages.

So the store keeps, per record, the writes it confirmed (``confirmed_writes``, one line in
``outcomes.confirmed``) until an extraction that *started after* the write has staged the record (staging
absorbs them, comparing the confirmation time with when the staging run's tap read, ``runs.read_from``: the
target's start, which is when its tap started under Meltano, or the first record's ``time_extracted`` if
earlier). Whatever is still listed when a merge begins (under the store's write lock, so no other write is
in flight) may be staged from before the write: it is read again directly, by id (Marketo ``leads.json`` by
id, 300 a call; Dataverse GET by id), staged as the newest version, and only then merged. A record the API no
longer has is left to the delete paths. The cost is one read per record written by an overlapping run and
not yet seen by an extraction: nothing in a sequential schedule, where each run's extraction sees the last
run's writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.schema import ETAG_PROPERTY
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.core.vocabulary import ENTITY_SET, STREAMS
from target_mktdyn_merge.store.database import Store

_LOGGER = logging.getLogger(__name__)


def refresh_stale(
    store: Store, run_id: str, marketo: MarketoClient, dynamics: DataverseClient, logger: logging.Logger | None = None
) -> int:
    """Re-read and stage every record written since its extraction started; return how many were read."""
    log = logger or _LOGGER
    total = 0
    for stream, spec in STREAMS.items():
        ids = store.stale_records(stream)
        if not ids:
            continue
        staged = store.staged_records(stream, ids)
        live = [record_id for record_id in ids if record_id in staged and not staged[record_id].deleted]
        fields = sorted({name for record_id in live for name in staged[record_id].fields})
        if spec.system == "marketo":
            records = read_persons(marketo, live, fields)
        else:
            selected = columns(spec.key, fields)
            records = as_staged_rows(dynamics.find_by_ids(ENTITY_SET[spec.entity], spec.key, live, selected), selected)
        if records:
            store.stage(stream, records, run_id)
        store.absorb_confirmed_writes(stream, ids, None)  # read after every confirmed write (we hold the lock)
        total += len(live)
        log.info(
            "re-read %d %s record(s) written since their extraction started (an overlapping run): %d found",
            len(live),
            stream,
            len(records),
        )
    return total


def read_persons(client: MarketoClient, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
    """Persons by id (300 per call), with these fields, as the tap sends them (REST keeps null and "null" apart)."""
    if not ids:
        return []
    wanted = [name for name in fields if name != "id"]
    return [{name: person.get(name) for name in ["id", *wanted]} for person in client.get_leads("id", ids, wanted)]


def columns(key: str, fields: list[str]) -> list[str]:
    """The Dataverse columns to read for these staged fields (the ETag and lookups' ``_x_value`` come anyway)."""
    return [name for name in fields if name != ETAG_PROPERTY and not name.startswith("_")] or [key]


def as_staged_rows(rows: Iterable[dict[str, Any]], selected: list[str]) -> list[dict[str, Any]]:
    """Dataverse rows as the tap sends them: the selected columns and the row's ETag."""
    return [{**{name: row.get(name) for name in selected}, ETAG_PROPERTY: row.get("@odata.etag")} for row in rows]
