"""The outbox: every write is planned in the store before it is sent and confirmed after (DESIGN §4).

A dry run plans with status ``dry_run``: the report shows exactly what would be written, and nothing is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge import store_schema as tables
from target_mktdyn_merge.values import dumps, now_iso

SYSTEMS = ("marketo", "dynamics")
ACTIONS = ("create", "update", "delete", "flag", "activity")


@dataclass
class PlannedWrite:
    """One write owed to one system."""

    system: str
    action: str
    payload: Mapping[str, Any]
    entity: str | None = None
    target_id: str | None = None
    pair_id: int | None = None
    idempotency_key: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS or self.action not in ACTIONS:
            raise ValueError(f"unknown write {self.system}/{self.action}")


def plan_writes(connection: sa.Connection, run_id: str, writes: Iterable[PlannedWrite], status: str = "planned") -> int:
    """Record writes in the outbox (``status`` is ``dry_run`` in a dry run)."""
    at = now_iso()
    rows = [
        {
            "run_id": run_id,
            "pair_id": w.pair_id,
            "system": w.system,
            "action": w.action,
            "entity": w.entity,
            "target_id": w.target_id,
            "idempotency_key": w.idempotency_key,
            "payload": dumps(dict(w.payload)),
            "context": dumps(dict(w.context)),
            "status": status,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        for w in writes
    ]
    if rows:
        connection.execute(sa.insert(tables.outbox), rows)
    return len(rows)


def writes_of_run(connection: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    """Every outbox entry of a run, payloads decoded."""
    rows = connection.execute(
        sa.select(tables.outbox).where(tables.outbox.c.run_id == run_id).order_by(tables.outbox.c.op_id)
    ).all()
    result = []
    for row in rows:
        item = dict(row._mapping)
        item["payload"] = json.loads(item["payload"])
        item["context"] = json.loads(item["context"])
        result.append(item)
    return result
