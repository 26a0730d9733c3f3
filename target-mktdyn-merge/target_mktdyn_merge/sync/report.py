"""The end-of-run report: counts per action and direction, collisions, failures, pending writes.

Written to stderr by the target (stdout belongs to Singer STATE, docs/architecture.md §8) and to stdout by
``mktdyn report``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

import sqlalchemy as sa

from target_mktdyn_merge.core.vocabulary import FAILURE_ACTIONS
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import action_counts, iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import OWED


def _short(value: Any, width: int = 40) -> str:
    text = "∅" if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pending_writes(store: Store) -> list[dict[str, Any]]:
    """Writes still owed to either system (planned, in doubt, failed or deferred)."""
    outbox = tables.outbox
    with store.transaction() as connection:
        rows = connection.execute(
            sa.select(outbox.c.system, outbox.c.action, outbox.c.status, sa.func.count())
            .where(outbox.c.status.in_(OWED))
            .group_by(outbox.c.system, outbox.c.action, outbox.c.status)
        ).all()
    return [{"system": s, "action": a, "status": st, "count": n} for s, a, st, n in rows]


def render_report(store: Store, run_id: str, out: TextIO, max_items: int = 50) -> None:
    """Write the report of one run to ``out``."""
    runs = tables.runs
    with store.transaction() as connection:
        run = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
    if run is None:
        out.write(f"no run {run_id!r} in the store\n")
        return
    out.write(f"mktdyn run {run_id}  mode={run.mode}  status={run.status}  started={run.started_at}")
    out.write(f"  finished={run.finished_at or '-'}\n")
    if run.mode == "dry_run":
        out.write("DRY RUN: nothing was written to either system; the actions below are what would be done.\n")
    if run.error:
        out.write(f"STOPPED: {run.error}\n")
    counts = action_counts(store, run_id)
    out.write(
        "\n"
        + (
            table(["action", "direction", "count"], [[a, d, n] for (a, d), n in sorted(counts.items())])
            if counts
            else "no activity"
        )
        + "\n"
    )
    collisions = list(iter_activities(store, run_id, ["collision"]))
    if collisions:
        out.write(f"\nCollisions ({len(collisions)}):\n")
        rows = []
        for item in collisions[:max_items]:
            details = item["details"]
            for change in item["fields"]:
                rows.append(
                    [
                        item["person_id"],
                        f"{item['entity']} {item['dynamics_id']}",
                        change["field"],
                        # Logged before collisions read as written (old/new were then Marketo/Dynamics).
                        _short(details["marketo"] if "marketo" in details else change.get("old")),
                        _short(details["dynamics"] if "dynamics" in details else change.get("new")),
                        item["winner"],
                        item["rule"],
                    ]
                )
        out.write(table(["person", "dynamics", "field", "marketo value", "dynamics value", "winner", "rule"], rows))
        out.write("\n")
    failures = list(iter_activities(store, run_id, FAILURE_ACTIONS))
    if failures:
        out.write(f"\nFailures ({len(failures)}):\n")
        out.write(
            table(
                ["action", "person", "dynamics", "direction", "code", "message"],
                [
                    [
                        f["action"],
                        f["person_id"],
                        f"{f['entity'] or ''} {f['dynamics_id'] or ''}".strip(),
                        f["direction"],
                        f["error_code"] or "",
                        _short(f["error_message"], 90),
                    ]
                    for f in failures[:max_items]
                ],
            )
        )
        out.write("\n")
    pending = pending_writes(store)
    if pending:
        out.write("\nPending writes:\n")
        out.write(
            table(
                ["system", "action", "status", "count"],
                [[p["system"], p["action"], p["status"], p["count"]] for p in pending],
            )
        )
        out.write("\n")
