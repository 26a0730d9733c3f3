"""The rules behind the operator's views, without the sandbox: history queries and retention on both store
backends, the activity filters, alert thresholds, guard bounds, escaping and the table layout."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.ops.report_html import chart, render_html, script_json
from target_mktdyn_merge.ops.views import parse_since
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import ActivityFilter, iter_activities, record_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import changed_counts, prune_unchanged, records_with_email, run_history
from target_mktdyn_merge.sync.alerts import Alert, AlertSettings, pending_growing, run_alerts, send_alerts
from target_mktdyn_merge.sync.progress import Progress
from target_mktdyn_merge.sync.report import render_report, wrapped_table
from target_mktdyn_merge.sync.report_data import reason_of, report_data
from target_mktdyn_merge.sync.write_guards import WriteGuards

from tests.ops.receiver import Receiver


@pytest.fixture
def store(store_url: str) -> Store:
    store = Store(store_url)
    store.migrate()
    return store


def seed(store: Store) -> tuple[str, str]:
    """Two runs: a merge that linked person 7 to lead L-7 (and left 3 unchanged), then a dry run."""
    staged = store.start_run("stage")
    store.stage("marketo_leads", [{"id": 7, "email": " Ada@Example.COM ", "updatedAt": "2026-01-01T00:00:00Z"}], staged)
    record = {"leadid": "L-7", "emailaddress1": "ada@example.com", "modifiedon": "2026-01-01T00:00:00Z"}
    store.stage("dynamics_leads", [record], staged)
    merge = store.start_run("merge")
    record_activities(store, merge, [Activity("linked", "7", "lead", "L-7", "none", rule="matched by email")])
    record_activities(store, merge, [Activity("unchanged", str(n)) for n in range(3)])
    record_activities(
        store, merge, [Activity("validation_failed", "7", "lead", "L-7", "to_dynamics", error_code="max_length",
                                error_message="firstname: 86 characters, Dynamics allows at most 50 (MaxLength)")]
    )  # fmt: skip
    store.finish_run(merge, "succeeded", {"pending_writes": 1})
    dry = store.start_run("dry_run")
    record_activities(store, dry, [Activity("updated", "7", "lead", "L-7", "to_dynamics")], dry_run=True)
    store.finish_run(dry, "succeeded")
    return merge, dry


def test_history_filters_and_retention(store: Store) -> None:
    merge, dry = seed(store)
    history = run_history(store, 10)
    assert [(h.run_id, h.mode) for h in history] == [(merge, "merge"), (dry, "dry_run")]
    assert history[0].counts == {"linked": 1, "unchanged": 3, "validation_failed": 1}
    assert records_with_email(store, "ADA@example.com") == (["7"], ["L-7"])
    assert changed_counts(store) == {"marketo_leads": 1, "dynamics_leads": 1}
    by_lead = list(iter_activities(store, where=ActivityFilter(dynamics_ids=("L-7",))))
    assert [i["action"] for i in by_lead] == ["linked", "validation_failed", "updated"]
    assert by_lead[-1]["dry_run"]
    only = ActivityFilter(person_ids=("7",), actions=("updated",), run_id=dry)
    assert [i["run_id"] for i in iter_activities(store, where=only)] == [dry]
    assert list(iter_activities(store, where=ActivityFilter(since="2999-01-01T00:00:00Z"))) == []
    data = report_data(store, merge)
    assert data["failures"]["items"][0]["error_message"].endswith("(MaxLength)")
    assert data["failures"]["top_reasons"] == [("validation_failed max_length", 1)]
    assert data["timeline"][0]["email"] == "ada@example.com"
    with store.transaction() as connection:
        connection.execute(sa.update(tables.activity_log).values(at="2020-01-01T00:00:00Z"))
        assert prune_unchanged(connection, "2025-01-01T00:00:00Z") == 3
    assert "unchanged" not in run_history(store, 10)[0].counts
    assert run_history(store, 10)[0].summary == {"pending_writes": 1}
    store.close()


def test_a_hostile_value_stays_text_in_the_page(store: Store) -> None:
    merge, _ = seed(store)
    record_activities(
        store, merge, [Activity("skipped", "9", rule="</script><script>alert(1)</script><img src=x onerror=alert(2)>")]
    )
    page = render_html(report_data(store, merge))
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page  # the skipped table, escaped
    encoded = str(script_json("</script>&"))
    assert "<" not in encoded
    assert "&" not in encoded
    assert json.loads(encoded) == "</script>&"  # JSON reads the escapes back
    store.close()


def test_the_chart_has_a_bar_per_run_and_action() -> None:
    runs = [
        {
            "run_id": "a",
            "mode": "merge",
            "started_at": "2026-12-05T07:00:00Z",
            "counts": {"created": 4, "unchanged": 9},
        },
        {
            "run_id": "b",
            "mode": "dry_run",
            "started_at": "2026-12-05T08:00:00Z",
            "counts": {"updated": 2, "created": 2},
        },
    ]
    drawn = chart(runs)
    assert [bar.title for bar in drawn["bars"]] == [
        "a (merge): 4 created",
        "b (dry_run): 2 created",
        "b (dry_run): 2 updated",
    ]
    assert drawn["bars"][0].height == pytest.approx(200.0)  # the tallest run fills the chart; unchanged is not drawn
    assert [label[1] for label in drawn["labels"]] == ["07:00", "08:00"]


def test_since_accepts_times_and_spans() -> None:
    now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    assert parse_since("24h", now) == "2026-12-04T09:00:00Z"
    assert parse_since("7d", now) == "2026-11-28T09:00:00Z"
    assert parse_since("2026-12-01", now) == "2026-12-01T00:00:00Z"
    assert parse_since("2026-12-01T10:00:00+01:00", now) == "2026-12-01T09:00:00Z"
    with pytest.raises(MktdynError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


def test_a_long_reason_wraps_and_is_never_cut() -> None:
    reason = "dynamics update of lead 0c31b524: firstname: 86 characters, Dynamics allows at most 50 (MaxLength)"
    text = wrapped_table(["action", "reason"], [["validation_failed", reason]], {1: 30})
    lines = text.splitlines()
    assert len(lines) > 3
    assert all(len(line) <= len("validation_failed") + 2 + 30 for line in lines)
    assert " ".join(" ".join(line[19:].split()) for line in lines[2:]) == reason


def test_pending_growth_over_n_runs() -> None:
    assert pending_growing([1, 2, 3, 4], 3)
    assert not pending_growing([1, 2, 2, 4], 3)
    assert not pending_growing([2, 3, 4], 3)  # not enough runs yet
    assert not pending_growing([None, 2, 3, 4], 3)  # a run from before the summary kept the count
    assert not pending_growing([1, 2, 3, 4], 0)


def test_an_alert_payload_is_slack_text_and_data() -> None:
    body = Alert(
        "record_failures",
        "r1",
        "12 record-level failures",
        {"validation_failed": 12},
        [("validation_failed max_length", 12)],
        None,
        "sqlite:///s.db",
    ).payload()
    assert body["text"].splitlines()[0] == ":rotating_light: mktdyn: 12 record-level failures"
    assert "12 validation_failed" in body["text"]
    assert "validation_failed max_length (12)" in body["text"]
    assert body["mktdyn"]["run_id"] == "r1"


def test_guard_bounds() -> None:
    guards = WriteGuards(10, 5, 0.5, allow_mass_change=False, link_only=False)
    assert guards.problems({"marketo": 10, "dynamics": 5}, 21, 100) == []
    assert guards.problems({"marketo": 11}, 0, 0) == ["11 creates in marketo exceed max_creates_in_marketo=10"]
    assert guards.problems({}, 20, 21) == []  # a handful is not a share
    assert guards.problems({}, 21, 40) == ["21 of 40 linked pairs (52%) would change, more than max_change_share=0.5"]
    assert WriteGuards(10, 5, 0.5, allow_mass_change=True, link_only=False).problems({"marketo": 99}, 40, 40) == []
    assert WriteGuards(10, 5, 0.5, allow_mass_change=False, link_only=True).problems({"marketo": 99}, 0, 0) == []


def test_progress_says_a_tenth_at_a_time(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(logging.getLogger("progress-test"), "planning", 1000, "changed records")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        for _ in range(100):
            progress.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[-1].startswith("planning: 1000 of 1000 changed records (100%) in ")


def test_owed_writes_growing_over_runs_alert_a_real_receiver(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    runs = []
    for owed in (1, 2, 3, 5):
        run_id = store.start_run("merge")
        store.finish_run(run_id, "succeeded", {"pending_writes": owed})
        runs.append(run_id)
    settings = AlertSettings("", record_failures=10, pending_runs=3)
    receiver = Receiver()
    try:
        alerts = run_alerts(store, replace(settings, webhook_url=receiver.url), runs[-1], 0, [])
        assert [a.kind for a in alerts] == ["pending_growing"]
        assert send_alerts(replace(settings, webhook_url=receiver.url), alerts, logging.getLogger("alerts")) == 1
        [body] = receiver.bodies
        assert body["mktdyn"]["pending_writes"] == 5
        assert "grew in each of the last 3 runs" in body["text"]
        assert runs[-1] in body["text"]
        # Not over four runs, and not to a plain-http host that is not this machine.
        assert run_alerts(store, replace(settings, pending_runs=4), runs[-1], 0, []) == []
        with caplog.at_level(logging.WARNING, logger="alerts"):
            remote = replace(settings, webhook_url="http://hooks.example/services/T/B/secret")
            assert send_alerts(remote, alerts, logging.getLogger("alerts")) == 0
        assert "must be an https URL" in caplog.text
        assert "secret" not in caplog.text.replace("is a secret", "")
    finally:
        receiver.close()
        store.close()


def test_ambiguous_matches_are_listed_with_their_candidates(store: Store) -> None:
    merge, _ = seed(store)
    ambiguous = Activity("ambiguous_match", "8", rule="2 leads have the email", details={"candidates": ["L-1", "L-2"]})
    record_activities(store, merge, [ambiguous])
    text = io.StringIO()
    render_report(store, merge, text)
    assert "Ambiguous matches (1; none guessed):" in text.getvalue()
    assert "L-1, L-2" in text.getvalue()
    [item] = iter_activities(store, merge, ["ambiguous_match"])
    assert reason_of(item) == "2 leads have the email (candidates: L-1, L-2)"
    store.close()


def test_the_report_lists_the_first_items_and_counts_them_all(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large run's report reads at most ``max_items`` activities of a kind, and still says how many there are.

    It held them all to count them: a million-person run's collisions were its target's peak memory.
    """
    read: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for item in iter_activities(*args, **kwargs):
            read.append(item["action"])
            yield item

    monkeypatch.setattr("target_mktdyn_merge.sync.report.iter_activities", counted)
    merge, _ = seed(store)
    collisions = [
        Activity("collision", str(n), "lead", f"L-{n}", "to_dynamics", winner="marketo", rule="lead: Marketo wins",
                 fields=[FieldChange("title", "a", "b")], details={"marketo": "a", "dynamics": "b"})
        for n in range(100, 107)
    ]  # fmt: skip
    record_activities(store, merge, collisions)
    text = io.StringIO()
    render_report(store, merge, text, max_items=3)
    report = text.getvalue()
    assert "Collisions (7):" in report
    assert [n for n in range(100, 107) if f"L-{n}" in report] == [100, 101, 102]
    assert "Failures (1):" in report  # seed's one validation failure
    assert read.count("collision") == 3
    store.close()
