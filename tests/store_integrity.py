"""An integrity check of the target's store, run by the bad-input tests after every case.

"Nothing staged or already synced is lost or corrupted" is checked two ways: :func:`integrity_problems`
holds the invariants every store must keep whatever input it saw (SQLite's own ``integrity_check``, the
schema version, valid statuses and actions, parseable JSON, sequences that only move forward, pairs
whose records are staged), and :func:`snapshot` captures what was staged and synced before a bad input
so a test can assert the bad input changed none of it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.core.vocabulary import ACTIVITY_ACTIONS as ACTIONS
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, STREAMS
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store

RUN_STATUSES = {"running", "succeeded", "failed"}
RUN_MODES = {"stage", "merge", "dry_run", "manual"}
OUTBOX_STATUSES = {
    "planned",
    "sent",
    "confirmed",
    "failed",
    "invalid",
    "deferred",
    "dry_run",
    "superseded",
    "cancelled",
}
SYSTEMS = {"marketo", "dynamics"}


def _json_problem(text: str | None, where: str, kind: type) -> str | None:
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        return f"{where}: not JSON ({exc})"
    return None if isinstance(value, kind) else f"{where}: JSON {type(value).__name__}, expected {kind.__name__}"


def integrity_problems(url: str) -> list[str]:
    """Every broken invariant of the store at ``url`` (empty when the store is intact)."""
    store = Store(url)
    problems: list[str] = []
    try:
        with store.transaction() as connection:
            if store.is_sqlite:
                verdict = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check").all()]
                if verdict != ["ok"]:
                    problems.append(f"sqlite integrity_check: {verdict}")
            version = connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
            if version != tables.LATEST_VERSION:
                problems.append(f"schema version {version}, expected {tables.LATEST_VERSION}")
            for run in connection.execute(sa.select(tables.runs)).all():
                if run.status not in RUN_STATUSES or run.mode not in RUN_MODES:
                    problems.append(f"run {run.run_id}: mode {run.mode!r}, status {run.status!r}")
                if run.status != "running" and run.finished_at is None:
                    problems.append(f"run {run.run_id}: {run.status} without finished_at")
                if run.status == "failed" and not run.error:
                    problems.append(f"run {run.run_id}: failed without an error")
                if run.summary is not None and (p := _json_problem(run.summary, f"run {run.run_id} summary", dict)):
                    problems.append(p)
            staged_keys: set[tuple[str, str]] = set()
            for row in connection.execute(sa.select(tables.staged)).all():
                where = f"staged {row.source}/{row.record_id}"
                staged_keys.add((row.source, row.record_id))
                if row.source not in STREAMS:
                    problems.append(f"{where}: unknown stream")
                if not row.record_id:
                    problems.append(f"{where}: empty key")
                if row.changed_seq < row.merged_seq:
                    problems.append(f"{where}: changed_seq {row.changed_seq} < merged_seq {row.merged_seq}")
                if p := _json_problem(row.fields, where, dict):
                    problems.append(p)
                elif row.deleted_at is None:
                    fields = json.loads(row.fields)
                    key = STREAMS[row.source].key if row.source in STREAMS else None
                    if key is not None and str(fields.get(key)) != row.record_id:
                        problems.append(f"{where}: fields carry key {fields.get(key)!r}")
            counters = {r.name: r.value for r in connection.execute(sa.select(tables.counters)).all()}
            top = connection.execute(sa.select(sa.func.max(tables.staged.c.changed_seq))).scalar()
            if top is not None and counters.get("changed", 0) < top:
                problems.append(f"counter 'changed' {counters.get('changed')} behind staged changed_seq {top}")
            seen_dynamics: set[tuple[str, str]] = set()
            for pair in connection.execute(sa.select(tables.pairs)).all():
                where = f"pair {pair.pair_id}"
                if pair.entity not in DYNAMICS_STREAM or pair.authority not in SYSTEMS:
                    problems.append(f"{where}: entity {pair.entity!r}, authority {pair.authority!r}")
                    continue
                if (pair.entity, pair.dynamics_id) in seen_dynamics:
                    problems.append(f"{where}: {pair.entity} {pair.dynamics_id} paired twice")
                seen_dynamics.add((pair.entity, pair.dynamics_id))
                if ("marketo_leads", pair.marketo_id) not in staged_keys:
                    problems.append(f"{where}: person {pair.marketo_id} not staged")
                if (DYNAMICS_STREAM[pair.entity], pair.dynamics_id) not in staged_keys:
                    problems.append(f"{where}: {pair.entity} {pair.dynamics_id} not staged")
                for column in ("baseline", "guard"):
                    if p := _json_problem(getattr(pair, column), f"{where} {column}", dict):
                        problems.append(p)
            for op in connection.execute(sa.select(tables.outbox)).all():
                where = f"outbox {op.op_id}"
                if op.status not in OUTBOX_STATUSES or op.system not in SYSTEMS:
                    problems.append(f"{where}: system {op.system!r}, status {op.status!r}")
                for column in ("payload", "context"):
                    if p := _json_problem(getattr(op, column), f"{where} {column}", dict | list):  # type: ignore[arg-type]
                        problems.append(p)
            for activity in connection.execute(sa.select(tables.activity_log)).all():
                where = f"activity {activity.activity_id}"
                if activity.action not in ACTIONS:
                    problems.append(f"{where}: action {activity.action!r}")
                if p := _json_problem(activity.fields, f"{where} fields", list):
                    problems.append(p)
                if p := _json_problem(activity.details, f"{where} details", dict):
                    problems.append(p)
    finally:
        store.close()
    return problems


def assert_intact(url: str) -> None:
    """Fail with every broken invariant listed."""
    problems = integrity_problems(url)
    assert not problems, "store integrity:\n" + "\n".join(problems)


def snapshot(url: str) -> dict[str, Any]:
    """What is staged and synced: staged rows, pairs with baselines, outbox and activity log."""
    store = Store(url)
    try:
        with store.transaction() as connection:
            return {
                "staged": {
                    (r.source, r.record_id): (r.fields, r.source_ts, r.deleted_at, r.changed_seq, r.merged_seq)
                    for r in connection.execute(sa.select(tables.staged)).all()
                },
                "pairs": [tuple(r) for r in connection.execute(sa.select(tables.pairs).order_by("pair_id")).all()],
                "outbox": [tuple(r) for r in connection.execute(sa.select(tables.outbox).order_by("op_id")).all()],
                "activity": [
                    tuple(r) for r in connection.execute(sa.select(tables.activity_log).order_by("activity_id")).all()
                ],
            }
    finally:
        store.close()
