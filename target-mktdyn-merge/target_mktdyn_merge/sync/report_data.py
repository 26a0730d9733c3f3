"""A run's report as data: what ``mktdyn report --format json`` prints and the HTML page and alerts show.

One gatherer for every view, so the page, the JSON and the alert say the same thing: the run (dry runs
labelled), the run history with counts per action, the failures with their full reasons, the collisions with
both values, winner and rule, the ambiguous matches with their candidates, the skips with their reasons, the
writes still owed, and a timeline of what happened to each record in the runs shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.core.vocabulary import FAILURE_ACTIONS
from target_mktdyn_merge.store.activity_log import ActivityFilter, iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import RunSummary, emails_of, run_history, run_summary
from target_mktdyn_merge.sync.report import pending_writes

#: Actions the timeline leaves out: a record nothing happened to has no story to tell.
QUIET_ACTIONS = ("unchanged",)


@dataclass(frozen=True)
class ReportLimits:
    """How much one report holds, so a page of a million-person store still opens in a browser."""

    history_runs: int = 30
    items: int = 1000  # failures, collisions, ambiguous matches, skips each
    timeline: int = 5000  # activities in the timeline (the newest)


def _activity(item: dict[str, Any]) -> dict[str, Any]:
    """An activity row as the report shows it (JSON-ready; times as text)."""
    return {
        "run_id": item["run_id"],
        "at": str(item["at"]),
        "action": item["action"],
        "dry_run": bool(item.get("dry_run")),
        "person_id": item["person_id"],
        "entity": item["entity"],
        "dynamics_id": item["dynamics_id"],
        "direction": item["direction"],
        "fields": item["fields"],
        "winner": item["winner"],
        "rule": item["rule"],
        "error_code": item["error_code"],
        "error_message": item["error_message"],
        "details": item["details"],
    }


def _take(
    items: Iterator[dict[str, Any]], limit: int, reasons: Counter[str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` items and how many there were in all (each counted in ``reasons`` when given)."""
    taken: list[dict[str, Any]] = []
    total = 0
    for item in items:
        total += 1
        if reasons is not None:
            reasons[reason_key(item)] += 1
        if len(taken) < limit:
            taken.append(_activity(item))
    return taken, total


def reason_of(item: dict[str, Any]) -> str:
    """Why an activity happened, in one line.

    The API's or validator's message, else the rule; an ambiguous match's candidates too (its rule does not
    name them).
    """
    message = str(item.get("error_message") or item.get("rule") or "")
    candidates = (item.get("details") or {}).get("candidates")
    if candidates:
        message = f"{message} (candidates: {', '.join(str(c) for c in candidates)})".strip()
    code = item.get("error_code")
    return f"{code}: {message}" if code and message else str(code or message)


def reason_key(item: dict[str, Any]) -> str:
    """A failure's kind for counting: the action and the API code or rule, without record-specific values."""
    return f"{item['action']} {item.get('error_code') or item.get('rule') or 'without a code'}"


def top_reasons(failures: Iterable[dict[str, Any]], limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent failure kinds (:func:`reason_key`) among ``failures``."""
    return Counter(reason_key(item) for item in failures).most_common(limit)


def failure_reasons(store: Store, run_id: str, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent failure kinds of a run (for alerts)."""
    return Counter(reason_key(item) for item in iter_activities(store, run_id, FAILURE_ACTIONS)).most_common(limit)


def _conflicts(collisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per collided field: both values, the winner and the rule."""
    rows = []
    for item in collisions:
        details = item["details"]
        for change in item["fields"]:
            rows.append(
                {
                    **{k: item[k] for k in ("run_id", "at", "person_id", "entity", "dynamics_id", "dry_run")},
                    "field": change["field"],
                    "marketo_value": details.get("marketo", change.get("old")),
                    "dynamics_value": details.get("dynamics", change.get("new")),
                    "winner": item["winner"],
                    "rule": item["rule"],
                }
            )
    return rows


def _timeline(store: Store, history: list[RunSummary], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` activities of the runs shown (quiet ones left out), each with its record's email."""
    runs = {run.run_id for run in history}
    since = history[0].started_at if history else None
    rows = [
        _activity(item)
        for item in iter_activities(store, where=ActivityFilter(since=since, leave_out=QUIET_ACTIONS))
        if item["run_id"] in runs
    ][-limit:]
    emails = emails_of(
        store,
        (r["person_id"] for r in rows if r["person_id"]),
        (r["dynamics_id"] for r in rows if r["dynamics_id"]),
    )
    for row in rows:
        row["email"] = emails.get(row["person_id"] or "") or emails.get(row["dynamics_id"] or "")
    return rows


def report_data(store: Store, run_id: str, limits: ReportLimits | None = None) -> dict[str, Any]:
    """Everything the report shows of ``run_id`` and the runs before it, as JSON-ready data."""
    limits = limits or ReportLimits()
    run = run_summary(store, run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in the store")
    history = run_history(store, limits.history_runs)
    if all(h.run_id != run_id for h in history):
        history.append(run)  # a stage or manual run asked for by id
    reasons: Counter[str] = Counter()
    failures, failure_count = _take(iter_activities(store, run_id, FAILURE_ACTIONS), limits.items, reasons)
    collisions, collision_count = _take(iter_activities(store, run_id, ["collision"]), limits.items)
    ambiguous, ambiguous_count = _take(iter_activities(store, run_id, ["ambiguous_match"]), limits.items)
    skipped, skipped_count = _take(iter_activities(store, run_id, ["skipped", "deferred"]), limits.items)
    return {
        "generated_at": now_iso(),
        "store": store.safe_url,
        "run": {**run.to_dict(), "dry_run": run.mode == "dry_run"},
        "history": [h.to_dict() for h in history],
        "failures": {"total": failure_count, "items": failures, "top_reasons": reasons.most_common(5)},
        "conflicts": {"total": collision_count, "items": _conflicts(collisions)},
        "ambiguous_matches": {"total": ambiguous_count, "items": ambiguous},
        "skipped": {"total": skipped_count, "items": skipped},
        "pending_writes": pending_writes(store),
        "timeline": _timeline(store, history, limits.timeline),
    }
