"""Alerts: a Slack-compatible JSON POST to ``alert_webhook_url`` when a run needs a person's attention.

Three things alert (docs/architecture.md §5): a run that failed (its one-line reason), a run whose record-level
failures reach ``alert_record_failures``, and writes still owed that grew in each of the last
``alert_pending_runs`` runs. The message names the run, its counts and the top failure reasons; it never
carries a secret (every text goes through the redactor, no setting is included, the store URL is shown with its
password hidden). The body is ``{"text": ...}`` (what Slack, and Teams or PagerDuty relays, read) plus a
``mktdyn`` object for machines. A webhook that cannot be reached is a warning in the log, never a failed run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import requests
from mktdyn_common.redact import redact
from mktdyn_common.transport import is_loopback, make_session

from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import run_history, run_summary
from target_mktdyn_merge.sync.report import pending_writes

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and when (``alert_*`` settings; defaults in the settings schema only)."""

    webhook_url: str
    record_failures: int
    pending_runs: int

    @property
    def enabled(self) -> bool:
        """Whether a webhook is configured."""
        return bool(self.webhook_url)


@dataclass
class Alert:
    """One message about one run."""

    kind: str  # run_failed | record_failures | pending_growing
    run_id: str
    headline: str
    counts: dict[str, int] = field(default_factory=dict)
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    pending: int | None = None
    store: str = ""

    def payload(self) -> dict[str, Any]:
        """The JSON body: Slack's ``text`` and the same facts as data (all text redacted)."""
        lines = [f":rotating_light: mktdyn: {self.headline}", f"run {self.run_id} (store {self.store})"]
        if self.counts:
            lines.append("counts: " + ", ".join(f"{n} {action}" for action, n in sorted(self.counts.items())))
        if self.top_reasons:
            lines.append("top reasons: " + "; ".join(f"{reason} ({n})" for reason, n in self.top_reasons))
        if self.pending is not None:
            lines.append(f"writes still owed: {self.pending}")
        lines.append(f"details: mktdyn report --run {self.run_id} --format html -o report.html")
        return {
            "text": redact("\n".join(lines)),
            "mktdyn": {
                "kind": self.kind,
                "run_id": self.run_id,
                "headline": redact(self.headline),
                "counts": dict(self.counts),
                "top_reasons": [[redact(reason), n] for reason, n in self.top_reasons],
                "pending_writes": self.pending,
            },
        }


def owed_count(store: Store) -> int:
    """Writes owed to either system now (what ``mktdyn status`` lists as pending)."""
    return sum(int(p["count"]) for p in pending_writes(store))


def pending_growing(history: Sequence[int | None], runs: int) -> bool:
    """Whether the owed writes grew in each of the last ``runs`` runs (``history`` oldest first)."""
    if runs < 1:
        return False
    recent = list(history)[-(runs + 1) :]
    if len(recent) < runs + 1 or any(n is None for n in recent):
        return False
    return all(int(b or 0) > int(a or 0) for a, b in pairwise(recent))


def run_alerts(
    store: Store,
    settings: AlertSettings,
    run_id: str,
    failures: int,
    reasons: list[tuple[str, int]],
    failed_reason: str | None = None,
) -> list[Alert]:
    """What a finished run alerts about (none when nothing crossed a threshold)."""
    summary = run_summary(store, run_id)
    counts = summary.counts if summary is not None else {}

    def alert(kind: str, headline: str, pending: int | None = None) -> Alert:
        return Alert(kind, run_id, headline, counts, reasons, pending, store.safe_url)

    alerts: list[Alert] = []
    if failed_reason:
        alerts.append(alert("run_failed", f"run failed: {failed_reason}"))
    elif settings.record_failures > 0 and failures >= settings.record_failures:
        alerts.append(
            alert(
                "record_failures",
                f"{failures} record-level failures (alert_record_failures={settings.record_failures})",
            )
        )
    history = [run.summary.get("pending_writes") for run in run_history(store, settings.pending_runs + 1, ("merge",))]
    if pending_growing(history, settings.pending_runs):
        grown = int(history[-1] or 0)
        alerts.append(
            alert("pending_growing", f"writes still owed grew in each of the last {settings.pending_runs} runs", grown)
        )
    return alerts


def send_alerts(settings: AlertSettings, alerts: Sequence[Alert], logger: logging.Logger) -> int:
    """POST each alert to the webhook; how many were accepted (a failure is logged, never raised)."""
    if not settings.enabled or not alerts:
        return 0
    parts = urlsplit(settings.webhook_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        logger.warning("alert not sent: setting 'alert_webhook_url' must be an https URL (http only on loopback)")
        return 0
    sent = 0
    with make_session(None, "mktdyn-alerts") as session:
        for alert in alerts:
            try:
                response = session.post(settings.webhook_url, json=alert.payload(), timeout=TIMEOUT_SECONDS)
                response.raise_for_status()
                sent += 1
            except requests.RequestException as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                logger.warning(
                    "alert %s of run %s not delivered to alert_webhook_url (%s)",
                    alert.kind,
                    alert.run_id,
                    f"HTTP {status}" if status else type(exc).__name__,
                )
    return sent
