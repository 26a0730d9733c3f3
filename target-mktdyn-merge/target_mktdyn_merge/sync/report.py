"""The end-of-run report: counts per action and direction, collisions, failures, pending writes.

Written to stderr by the target (stdout belongs to Singer STATE, docs/architecture.md §8) and to stdout by
``mktdyn report``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from itertools import islice
from typing import Any, TextIO

import sqlalchemy as sa

from target_mktdyn_merge.core.vocabulary import FAILURE_ACTIONS
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import action_counts, iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import OWED


def _text(value: Any) -> str:
    """A field value in a text table: ∅ for none, JSON for anything not a string (wrapped, never cut)."""
    return "∅" if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def wrapped_table(headers: list[str], rows: Iterable[list[str]], wrap: dict[int, int]) -> str:
    """A plain-text table whose ``wrap`` columns (index → width) continue on the next lines instead of being cut."""
    lines_of: list[list[list[str]]] = [[[str(h)] for h in headers]]
    for cells in rows:
        lines_of.append([_cell_lines(cell, wrap.get(i)) for i, cell in enumerate(cells)])
    widths = [max(len(line) for row in lines_of for line in row[i]) for i in range(len(headers))]
    out: list[str] = []
    for number, row in enumerate(lines_of):
        for k in range(max(len(cell) for cell in row)):
            parts = [(cell[k] if k < len(cell) else "").ljust(widths[i]) for i, cell in enumerate(row)]
            out.append("  ".join(parts).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell_lines(cell: str, width: int | None) -> list[str]:
    """A cell's lines: wrapped at ``width`` (words longer than it are broken), or the cell as one line."""
    if width is None:
        return [cell]
    return textwrap.wrap(cell, width, break_long_words=True, break_on_hyphens=False) or [""]


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
    # The first max_items of each, counted from the totals above: a large run's tens of thousands of
    # collisions, held in memory only to be counted, were its largest allocation (the peak of a million-person run).
    for write, actions in (
        (_write_collisions, ("collision",)),
        (_write_failures, FAILURE_ACTIONS),
        (_write_ambiguous, ("ambiguous_match",)),
    ):
        total = sum(n for (action, _), n in counts.items() if action in actions)
        if total:
            write(out, list(islice(iter_activities(store, run_id, actions, batch_size=max_items), max_items)), total)
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


def _write_collisions(out: TextIO, collisions: list[dict[str, Any]], total: int) -> None:
    """The collisions: both values, the winner and the rule, one row per field (values wrapped, never cut)."""
    out.write(f"\nCollisions ({total}):\n")
    rows = []
    for item in collisions:
        details = item["details"]
        for change in item["fields"]:
            rows.append(
                [
                    str(item["person_id"] or ""),
                    f"{item['entity']} {item['dynamics_id']}",
                    change["field"],
                    # Logged before collisions read as written (old/new were then Marketo/Dynamics).
                    _text(details["marketo"] if "marketo" in details else change.get("old")),
                    _text(details["dynamics"] if "dynamics" in details else change.get("new")),
                    str(item["winner"] or ""),
                    str(item["rule"] or ""),
                ]
            )
    headers = ["person", "dynamics", "field", "marketo value", "dynamics value", "winner", "rule"]
    out.write(wrapped_table(headers, rows, {3: 40, 4: 40}) + "\n")


def _write_failures(out: TextIO, failures: list[dict[str, Any]], total: int) -> None:
    """The record-level failures with their whole message, wrapped (the issue's ``…at most 50 (MaxL…``)."""
    out.write(f"\nFailures ({total}):\n")
    rows = [
        [
            f["action"],
            str(f["person_id"] or ""),
            f"{f['entity'] or ''} {f['dynamics_id'] or ''}".strip(),
            str(f["direction"] or ""),
            f["error_code"] or "",
            str(f["error_message"] or f["rule"] or ""),
        ]
        for f in failures
    ]
    out.write(wrapped_table(["action", "person", "dynamics", "direction", "code", "message"], rows, {5: 90}) + "\n")


def _write_ambiguous(out: TextIO, matches: list[dict[str, Any]], total: int) -> None:
    """The ambiguous matches with their candidates: the records an operator has to merge or tell apart."""
    out.write(f"\nAmbiguous matches ({total}; none guessed):\n")
    rows = [
        [
            str(m["person_id"] or ""),
            f"{m['entity'] or ''} {m['dynamics_id'] or ''}".strip(),
            ", ".join(str(c) for c in m["details"].get("candidates") or []),
            str(m["rule"] or ""),
        ]
        for m in matches
    ]
    out.write(wrapped_table(["person", "dynamics", "candidates", "reason"], rows, {2: 60, 3: 60}) + "\n")
