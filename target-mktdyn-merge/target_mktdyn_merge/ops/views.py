"""What an operator reads: ``mktdyn report``, ``activity`` and ``status`` (docs/architecture.md §5).

``report`` shows the newest run of either kind (a dry run is labelled as one) as text, JSON or one
self-contained HTML page; ``activity`` answers "what happened to this person / these failures / since
Monday" with filters, a reason column and messages wrapped, never cut; ``status`` is also JSON for monitors.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mktdyn_common.errors import MktdynError

from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.core.vocabulary import ACTIVITY_ACTIONS
from target_mktdyn_merge.store.activity_log import ActivityFilter, iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import pair_counts, records_with_email, run_summary
from target_mktdyn_merge.store.pairs import pairs_by_person
from target_mktdyn_merge.sync.report import pending_writes, render_report, wrapped_table
from target_mktdyn_merge.sync.report_data import reason_of, report_data

#: Width of the wrapped message column of ``mktdyn activity`` (the rest of the row stays on one line).
REASON_WIDTH = 72
RELATIVE = re.compile(r"^(?P<n>\d+)(?P<unit>[mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def latest_run(store: Store) -> str:
    """The newest merging run, real or dry (a dry run after a real one is what the operator just ran)."""
    newest = [r for r in (store.last_run("merge"), store.last_run("dry_run")) if r is not None]
    if not newest:
        newest = [r for r in (store.last_run(),) if r is not None]
    if not newest:
        raise MktdynError("the store holds no run yet; run the sync first")
    return max(newest, key=lambda run_id: (store.run_started_at(run_id), run_id))


def chosen_run(store: Store, requested: str | None) -> str:
    """``--run`` if the store has it (else a one-line error), otherwise :func:`latest_run`."""
    if requested:
        if run_summary(store, requested) is None:
            raise MktdynError(f"no run {requested!r} in the store at {store.safe_url}; `mktdyn status` lists runs")
        return requested
    return latest_run(store)


def parse_since(text: str, now: datetime | None = None) -> str:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or a span back from now (30m, 24h, 7d)."""
    relative = RELATIVE.match(text.strip())
    if relative:
        span = timedelta(**{UNITS[relative["unit"]]: int(relative["n"])})
        return utc_iso((now or datetime.now(UTC)) - span)
    try:
        return utc_iso(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise MktdynError(
            f"--since {text!r} is neither an ISO date/time (2026-12-01, 2026-12-01T08:00:00Z) nor a span (30m, 24h, 7d)"
        ) from None


def activity_filter(store: Store, args: argparse.Namespace) -> ActivityFilter:
    """The filter of ``mktdyn activity``'s options; by person or email, every run unless ``--run`` says one."""
    persons: list[str] = []
    dynamics: list[str] = []
    if args.person:
        persons.append(str(args.person))
        with store.transaction() as connection:
            pair = pairs_by_person(connection, [str(args.person)]).get(str(args.person))
        if pair is not None:
            dynamics.append(pair.dynamics_id)
    if args.email:
        found_persons, found_dynamics = records_with_email(store, args.email)
        if not found_persons and not found_dynamics:
            raise MktdynError(f"no person, lead or contact with the email {args.email!r} is staged in the store")
        persons += found_persons
        dynamics += found_dynamics
    searching = bool(args.person or args.email or args.since or args.action)
    run_id = chosen_run(store, args.run) if args.run or not (args.all or searching) else None
    return ActivityFilter(
        run_id=run_id,
        actions=tuple(args.action or ()),
        person_ids=tuple(persons),
        dynamics_ids=tuple(dynamics),
        since=parse_since(args.since) if args.since else None,
    )


def cmd_report(args: argparse.Namespace, open_store: Callable[[], Store]) -> int:
    """Print (or write to ``--output``) a run's report as text, JSON or a self-contained HTML page."""
    store = open_store()
    run_id = chosen_run(store, args.run)
    if args.format == "text":
        buffer = io.StringIO()
        render_report(store, run_id, buffer)
        text = buffer.getvalue()
    elif args.format == "json":
        text = json.dumps(report_data(store, run_id), ensure_ascii=False, default=str, indent=1) + "\n"
    else:
        from target_mktdyn_merge.ops.report_html import render_html  # Jinja2 only for the page

        text = render_html(report_data(store, run_id))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        sys.stderr.write(f"mktdyn: the report of run {run_id} is in {args.output}\n")
    else:
        sys.stdout.write(text)
    return 0


def cmd_activity(args: argparse.Namespace, open_store: Callable[[], Store]) -> int:
    """Print the activities the filters select, as a table (reason wrapped, dry-run rows marked) or JSON lines."""
    store = open_store()
    items = iter_activities(store, where=activity_filter(store, args))
    if args.format == "jsonl":
        for item in items:
            sys.stdout.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
        return 0
    rows = (
        [
            str(i["at"]),
            f"{i['action']} (dry run)" if i.get("dry_run") else i["action"],
            i["person_id"] or "",
            f"{i['entity'] or ''} {i['dynamics_id'] or ''}".strip(),
            i["direction"] or "",
            ",".join(c["field"] for c in i["fields"]),
            i["error_code"] or "",
            reason_of({**i, "error_code": None}),
        ]
        for i in items
    )
    headers = ["at", "action", "person", "dynamics", "direction", "fields", "code", "reason"]
    sys.stdout.write(wrapped_table(headers, rows, {7: REASON_WIDTH}) + "\n")
    return 0


def status_data(store: Store, limit: int) -> dict[str, Any]:
    """``mktdyn status`` as data: pairs per entity, staged records, writes owed, the newest runs."""
    return {
        "pairs": pair_counts(store),
        "staged": store.staged_counts(),
        "pending_writes": pending_writes(store),
        "runs": [
            {k: r[k] for k in ("run_id", "mode", "status", "started_at", "finished_at", "error")}
            for r in store.runs(limit)
        ],
    }


def cmd_status(args: argparse.Namespace, open_store: Callable[[], Store]) -> int:
    """Print linked pairs, staged records, pending writes and the last runs (``--format json`` for monitors)."""
    from target_mktdyn_merge.sync.report import table

    data = status_data(open_store(), args.limit)
    if args.format == "json":
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        return 0
    pairs, staged, pending = data["pairs"], data["staged"], data["pending_writes"]
    sys.stdout.write("Linked pairs: " + (", ".join(f"{n} {e}s" for e, n in pairs.items()) or "none") + "\n")
    sys.stdout.write(
        "Staged: "
        + (", ".join(f"{s} {c['live']} live/{c['deleted']} deleted" for s, c in sorted(staged.items())) or "nothing")
        + "\n"
    )
    sys.stdout.write(
        "Pending writes: "
        + (", ".join(f"{p['count']} {p['system']} {p['action']} ({p['status']})" for p in pending) or "none")
        + "\n\n"
    )
    rows = [[r["run_id"], r["mode"], r["status"], r["started_at"], r["finished_at"] or ""] for r in data["runs"]]
    sys.stdout.write(table(["run", "mode", "status", "started", "finished"], rows) + "\n")
    return 0


def add_view_commands(commands: Any, open_store: Callable[[argparse.Namespace], Store]) -> None:
    """Register ``report``, ``activity`` and ``status`` on the ``mktdyn`` sub-command parser."""

    def bound(command: Callable[[argparse.Namespace, Callable[[], Store]], int]) -> Callable[..., int]:
        return lambda args: command(args, lambda: open_store(args))

    report = commands.add_parser("report", help="the report of a run (default: the newest run, real or dry)")
    report.add_argument("--run", help="run id")
    report.add_argument("--format", choices=["text", "json", "html"], default="text")
    report.add_argument("--output", "-o", help="write to this file instead of stdout (the HTML page, typically)")
    report.set_defaults(func=bound(cmd_report))
    activity = commands.add_parser(
        "activity",
        help="the activity log: of the newest run, or filtered by person, email, action, time or run",
    )
    activity.add_argument("--run", help="run id (default: the newest run, unless a filter below searches them all)")
    activity.add_argument("--all", action="store_true", help="every run")
    activity.add_argument("--person", help="a Marketo person id (its linked lead/contact's activities too)")
    activity.add_argument("--email", help="every person, lead and contact staged with this email")
    activity.add_argument("--action", action="append", choices=ACTIVITY_ACTIONS, help="only this action (repeatable)")
    activity.add_argument(
        "--since", help="from this UTC date/time (2026-12-01, 2026-12-01T08:00:00Z) or span (24h, 7d)"
    )
    activity.add_argument("--format", choices=["table", "jsonl"], default="table")
    activity.set_defaults(func=bound(cmd_activity))
    status = commands.add_parser("status", help="pairs, pending writes and recent runs")
    status.add_argument("--limit", type=int, default=5, help="how many recent runs to list")
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(func=bound(cmd_status))
