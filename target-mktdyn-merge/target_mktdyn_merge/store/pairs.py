"""Pairs (one Marketo person ⇄ one Dynamics lead or contact) and their baselines, as stored."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.baseline import BaselineEntry
from target_mktdyn_merge.core.guards import FieldGuard
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.core.values import dumps, now_iso
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, PERSONS_STREAM
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import CHUNK


def _from_row(row: sa.Row[Any]) -> Pair:
    mapping = row._mapping
    pair = Pair(
        marketo_id=str(mapping["marketo_id"]),
        entity="contact" if mapping["entity"] == "contact" else "lead",
        dynamics_id=str(mapping["dynamics_id"]),
        authority=str(mapping["authority"]),
        pair_id=int(mapping["pair_id"]),
        first_merge_done=bool(mapping["first_merge_done"]),
        first_merged_run=mapping["first_merged_run"],
        requested=bool(mapping["requested"]),
        baseline={k: BaselineEntry.from_dict(v) for k, v in json.loads(str(mapping["baseline"])).items()},
        guards={k: FieldGuard.from_dict(v) for k, v in json.loads(str(mapping["guard"])).items()},
    )
    pair.stored = _pair_state(pair)
    return pair


def _pair_state(pair: Pair) -> tuple[Any, ...]:
    """What a save would write, cheap to compare: the columns, and the baseline and guards as their entries.

    Entries are frozen and a merge replaces the ones it moves, so an unchanged entry compares by identity and a
    rerun's tens of thousands of unchanged pairs cost no JSON encoding (comparing the encoded text was 7% of
    its planning).
    """
    return (*_pair_values(pair, json_columns=False).values(), dict(pair.baseline), dict(pair.guards))


def pairs_by_person(connection: sa.Connection, person_ids: Iterable[str]) -> dict[str, Pair]:
    """Existing pairs of these Marketo persons."""
    table = tables.pairs
    ids = sorted(set(person_ids))
    found: dict[str, Pair] = {}
    for start in range(0, len(ids), CHUNK):
        for row in connection.execute(sa.select(table).where(table.c.marketo_id.in_(ids[start : start + CHUNK]))):
            pair = _from_row(row)
            found[pair.marketo_id] = pair
    return found


def pairs_by_dynamics(connection: sa.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Pair]:
    """Existing pairs of these (entity, Dynamics id) rows."""
    found: dict[tuple[str, str], Pair] = {}
    for row in _rows_by_dynamics(connection, keys, [tables.pairs]):
        pair = _from_row(row)
        found[(pair.entity, pair.dynamics_id)] = pair
    return found


def persons_linked_to(connection: sa.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The Marketo person each of these (entity, Dynamics id) rows is linked to, if any.

    What matching asks of a candidate's pair: only its person, so the baseline (the pair's largest part) is
    neither read nor parsed.
    """
    table = tables.pairs
    columns = [table.c.entity, table.c.dynamics_id, table.c.marketo_id]
    return {
        (str(entity), str(dynamics_id)): str(marketo_id)
        for entity, dynamics_id, marketo_id in _rows_by_dynamics(connection, keys, columns)
    }


def _rows_by_dynamics(
    connection: sa.Connection, keys: Iterable[tuple[str, str]], columns: list[Any]
) -> Iterator[sa.Row[Any]]:
    """``columns`` of the pairs of these (entity, Dynamics id) rows, ``CHUNK`` ids per query."""
    table = tables.pairs
    by_entity: dict[str, list[str]] = {}
    for entity, row_id in keys:
        by_entity.setdefault(entity, []).append(row_id)
    for entity, ids in by_entity.items():
        for start in range(0, len(ids), CHUNK):
            query = sa.select(*columns).where(
                table.c.entity == entity, table.c.dynamics_id.in_(ids[start : start + CHUNK])
            )
            yield from connection.execute(query)


def _pair_values(pair: Pair, json_columns: bool = True) -> dict[str, Any]:
    """The pair's columns; the baseline and guard (JSON text) only when ``json_columns``."""
    values: dict[str, Any] = {
        "marketo_id": pair.marketo_id,
        "entity": pair.entity,
        "dynamics_id": pair.dynamics_id,
        "authority": pair.authority,
        "first_merge_done": pair.first_merge_done,
        "first_merged_run": pair.first_merged_run,
        "requested": pair.requested,
    }
    if json_columns:
        values["baseline"] = dumps({k: v.to_dict() for k, v in pair.baseline.items()})
        values["guard"] = dumps({k: v.to_dict() for k, v in pair.guards.items()})
    return values


def all_pairs(connection: sa.Connection) -> list[Pair]:
    """Every pair (``mktdyn resync`` of a field across the store)."""
    return [_from_row(row) for row in connection.execute(sa.select(tables.pairs).order_by(tables.pairs.c.pair_id))]


def mark_pair_dirty(connection: sa.Connection, pair: Pair) -> None:
    """Make the next merge revisit both sides of a pair, as if both had changed."""
    staged = tables.staged
    for source, record_id in ((PERSONS_STREAM, pair.marketo_id), (DYNAMICS_STREAM[pair.entity], pair.dynamics_id)):
        connection.execute(
            sa.update(staged).where(staged.c.source == source, staged.c.record_id == record_id).values(merged_seq=0)
        )


def save_pair(connection: sa.Connection, pair: Pair, run_id: str) -> None:
    """Insert or update a pair (a moved pair keeps its row; its Dynamics side changes)."""
    save_pairs(connection, [pair], run_id)


def save_pairs(connection: sa.Connection, pairs: Iterable[Pair], run_id: str | None = None) -> None:
    """Insert or update many pairs in two statements (an initial sync links tens of thousands).

    Updates go first, so a pair that moved frees its old Dynamics row before a new pair may take it. New
    pairs get their ids back in the order they were given (``sort_by_parameter_order``). A pair whose columns
    are what the store already holds is not written: a rerun's echoes of our own writes leave tens of thousands
    of pairs as they were, and rewriting them was 16% of its planning.
    """
    table = tables.pairs
    pairs = list(pairs)
    states = [_pair_state(p) for p in pairs]
    known = [
        (p, _pair_values(p))
        for p, state in zip(pairs, states, strict=True)
        if p.pair_id is not None and state != p.stored
    ]
    new = [(p, _pair_values(p)) for p in pairs if p.pair_id is None]
    if known:
        columns = list(known[0][1])
        connection.execute(
            sa.update(table)
            .where(table.c.pair_id == sa.bindparam("b_pair_id"))
            .values({c: sa.bindparam(f"b_{c}") for c in columns}),
            [{"b_pair_id": p.pair_id, **{f"b_{k}": value for k, value in v.items()}} for p, v in known],
        )
    if new:
        if run_id is None:
            raise ValueError("new pairs are saved with the run that linked them")
        linked_at = now_iso()
        rows = [{"linked_at": linked_at, "linked_run": run_id, **v} for _, v in new]
        inserted = connection.execute(
            sa.insert(table).returning(table.c.pair_id, sort_by_parameter_order=True), rows
        ).all()
        for (pair, _), row in zip(new, inserted, strict=True):
            pair.pair_id = int(row.pair_id)
    for pair, state in zip(pairs, states, strict=True):
        pair.stored = state


def delete_pair(connection: sa.Connection, pair: Pair) -> None:
    """Unlink: forget the pair and its baseline."""
    if pair.pair_id is not None:
        connection.execute(sa.delete(tables.pairs).where(tables.pairs.c.pair_id == pair.pair_id))
