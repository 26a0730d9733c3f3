"""Read some persons and their Dynamics candidates now, and stage them as the batch's taps would.

The real-time path (docs/architecture.md §10) must not decide from what the last extraction saw: a person
triggered in a campaign a second ago is usually not in the store at all, and its lead may have appeared in
Dynamics since. So before a one-person sync plans anything, it reads, through the taps' clients:

- the persons by id, one ``leads.json`` call per 300 (a burst of triggers costs one call, not one each);
- the leads and contacts with those persons' emails (50 emails per Dataverse request), and the rows the
  persons are already linked to;

with the fields the streams' current catalogs select (what the store recorded from their last SCHEMA), or,
before any extraction, the field map's fields and the ones docs/architecture.md §9.3 always sends. They are
staged with the store's own idempotent staging, so the next batch run sees the same versions (a record read
here and extracted later is simply unchanged) and agrees with what was decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.schema import ALWAYS_SENT as DYNAMICS_ALWAYS_SENT
from tap_dynamics_leads.schema import ETAG_PROPERTY
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.schema import AUTOMATIC_FIELDS as MARKETO_ALWAYS_SENT

from target_mktdyn_merge.core.fieldmap import FieldMap
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.normalize import normalize_email
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, ENTITIES, ENTITY_SET, PERSONS_STREAM, STREAMS
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.pairs import pairs_by_person
from target_mktdyn_merge.sync.freshness import as_staged_rows, read_persons


@dataclass(frozen=True)
class ReadScope:
    """What to read: the fields of each side and the policy fields the create decision looks at."""

    field_map: FieldMap
    metadata: SyncMetadata
    extra_marketo_fields: tuple[str, ...] = ("createdAt",)


def stage_persons(
    store: Store, run_id: str, person_ids: list[str], scope: ReadScope, marketo: MarketoClient
) -> set[str]:
    """Read these persons from Marketo and stage them; return the ids Marketo has."""
    fields = _person_fields(store, scope)
    persons = read_persons(marketo, person_ids, fields)
    if persons:
        store.stage(PERSONS_STREAM, persons, run_id)
    return {str(person["id"]) for person in persons}


def stage_candidates(
    store: Store, run_id: str, person_ids: Iterable[str], scope: ReadScope, dynamics: DataverseClient
) -> frozenset[str]:
    """Read the leads and contacts these (staged) persons could match or are linked to, and stage them.

    Returns the normalized emails looked up in both tables. Emails are looked up as Dataverse compares them
    (case-insensitively); the planner then matches by the normalized email as it always does.
    """
    ids = list(person_ids)
    persons = store.staged_records(PERSONS_STREAM, ids)
    emails = sorted({e for p in persons.values() if (e := normalize_email(p.fields.get("email"))) is not None})
    with store.transaction() as connection:
        linked = pairs_by_person(connection, ids)
    for entity in ENTITIES:
        stream = DYNAMICS_STREAM[entity]
        key = STREAMS[stream].key
        select = _dynamics_columns(store, scope, entity)
        rows = list(dynamics.find_by_emails(ENTITY_SET[entity], emails, select)) if emails else []
        found = {str(row.get(key)) for row in rows}
        pair_ids = [p.dynamics_id for p in linked.values() if p.entity == entity and p.dynamics_id not in found]
        if pair_ids:
            rows += list(dynamics.find_by_ids(ENTITY_SET[entity], key, pair_ids, select))
        if rows:
            store.stage(stream, as_staged_rows(rows, select), run_id)
    return frozenset(emails)


def _person_fields(store: Store, scope: ReadScope) -> list[str]:
    """The persons stream's selected fields, else the mapped ones and those always sent, as Marketo has them."""
    selected = store.selection(PERSONS_STREAM)
    wanted = set(selected) if selected is not None else set(scope.field_map.marketo_fields())
    wanted.update(MARKETO_ALWAYS_SENT)
    wanted.update(scope.extra_marketo_fields)
    return sorted(name for name in wanted if name in scope.metadata.marketo_types or name == "id")


def _dynamics_columns(store: Store, scope: ReadScope, entity: str) -> list[str]:
    """An entity's selected columns, else the mapped ones and those always sent, as Dataverse has them."""
    stream = DYNAMICS_STREAM[entity]
    key = STREAMS[stream].key
    selected = store.selection(stream)
    wanted = set(selected) if selected is not None else set(scope.field_map.dynamics_columns(entity))
    wanted.update(DYNAMICS_ALWAYS_SENT)
    readable = scope.metadata.dynamics_attributes[entity]
    return [key, *sorted(name for name in wanted if name in readable and name not in (key, ETAG_PROPERTY))]
