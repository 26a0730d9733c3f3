"""Tombstones: a record whose counterpart was deleted is not re-created on the other side until it changes.

Without them, the default ``ignore`` delete policy would bring a person deleted in Marketo straight back from
its Dynamics lead at the next extraction of that lead (even one caused by our own earlier write). Marketo's
own sync re-creates such a person only when the CRM record is updated; a tombstone remembers the survivor's
mapped values when its pair ended, and only a change to them lifts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.fieldmap import FieldMap
from target_mktdyn_merge.core.values import dumps
from target_mktdyn_merge.core.vocabulary import Entity
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK


def fingerprint(field_map: FieldMap, entity: Entity, system: str, fields: Mapping[str, Any]) -> str:
    """The mapped values of a record on one side, as comparable text."""
    names = [rule.marketo if system == "marketo" else rule.dynamics for rule in field_map.rules(entity)]
    return dumps({name: fields.get(name) for name in sorted(names)})


def bury(
    connection: sa.Connection, system: str, entity: str, record_id: str, deleted_at: str, print_: str, run_id: str
) -> None:
    """Remember the survivor of a delete (replacing an older tombstone of the same record)."""
    table = tables.tombstones
    key = (table.c.survivor_system == system, table.c.survivor_entity == entity, table.c.survivor_id == record_id)
    connection.execute(sa.delete(table).where(*key))
    connection.execute(
        sa.insert(table).values(
            survivor_system=system,
            survivor_entity=entity,
            survivor_id=record_id,
            deleted_at=deleted_at,
            fingerprint=print_,
            run_id=run_id,
        )
    )


def still_buried(connection: sa.Connection, system: str, entity: str, record_id: str, print_: str) -> str | None:
    """The deletion time when the record has not changed since its counterpart was deleted; else None.

    A record that did change is exhumed (its tombstone removed), so it is created on the other side again.
    """
    table = tables.tombstones
    key = (table.c.survivor_system == system, table.c.survivor_entity == entity, table.c.survivor_id == record_id)
    row = connection.execute(sa.select(table).where(*key)).first()
    if row is None:
        return None
    if row.fingerprint == print_:
        return str(row.deleted_at)
    connection.execute(sa.delete(table).where(*key))
    return None


def buried_among(connection: sa.Connection, record_ids: list[str]) -> set[tuple[str, str, str]]:
    """The (system, entity, id) of those of ``record_ids`` (of either system) that have a tombstone.

    One query per ``CHUNK`` ids, so a planning batch learns which of its records need the full fingerprint
    comparison (``still_buried``) without a query per record.
    """
    table = tables.tombstones
    found: set[tuple[str, str, str]] = set()
    for start in range(0, len(record_ids), CHUNK):
        query = sa.select(table.c.survivor_system, table.c.survivor_entity, table.c.survivor_id).where(
            table.c.survivor_id.in_(record_ids[start : start + CHUNK])
        )
        found.update((str(a), str(b), str(c)) for a, b, c in connection.execute(query))
    return found
