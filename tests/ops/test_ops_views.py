"""What an operator sees (issue 20): the report as text, JSON and an HTML page opened in a real browser, the
activity log's filters, ``status --format json``, alerts to a real HTTP receiver, and activity retention.

One small world (30 persons, real sandbox, real plugin CLIs, SQLite store) is synced three times: a first sync,
a second after hostile edits (one too long for Dynamics: a validation failure; markup in values), and a dry
run. Before the second, some activities are aged past ``activity_retention_days``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from target_mktdyn_merge.ops.cli import main
from target_mktdyn_merge.store import schema as tables

from tests.ops.receiver import Receiver
from tests.ops.sandboxes import small_sandbox
from tests.target.pipeline import Pipeline

MKTDYN = str(Path(sys.executable).parent / "mktdyn")
#: A first name longer than Dynamics' MaxLength (50) that also tries to close the page's script element.
HOSTILE_NAME = "</script><script>window.__pwned=1</script>" + "Bartholomew" * 4
HOSTILE_TITLE = '<img src=x onerror="window.__pwned=2">Head of <b>Growth</b>'
OLD = "2020-01-01T00:00:00Z"
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is never used


def mktdyn(world: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``mktdyn --store-url STORE ARGS``: its ``main``, in this process (the console script is tested elsewhere)."""
    argv = ["--store-url", world["pipeline"].store_url, *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess([MKTDYN, *argv], code, out.getvalue(), err.getvalue())


def lead_pairs(pipeline: Pipeline) -> list[dict[str, Any]]:
    store = pipeline.store()
    with store.transaction() as connection:
        rows = connection.execute(sa.select(tables.pairs).where(tables.pairs.c.entity == "lead")).all()
    store.close()
    return [dict(r._mapping) for r in rows]


def age_activities(pipeline: Pipeline, actions: list[str], limit: int) -> list[int]:
    """Make some activities look ``OLD``; the ids of those aged."""
    store = pipeline.store()
    log = tables.activity_log
    with store.transaction() as connection:
        ids = [
            row.activity_id
            for action in actions
            for row in connection.execute(sa.select(log.c.activity_id).where(log.c.action == action).limit(limit))
        ]
        connection.execute(sa.update(log).where(log.c.activity_id.in_(ids)).values(at=OLD))
    store.close()
    return ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ops-views")
    with small_sandbox(root / "sandbox", persons=30, dynamics_only=4, overlap=0.7, seed=3) as (info, admin):
        yield from _views_world(root, info, admin)


def _views_world(root: Path, info: dict[str, Any], admin: SandboxAdmin) -> Iterator[dict[str, Any]]:
    """The world's three syncs (see the module's docstring), then the world; its receiver closed after."""
    receiver = Receiver()
    pipeline = Pipeline(info, root / "work", {"alert_webhook_url": receiver.url, "alert_record_failures": 1})
    first = pipeline.sync()
    pairs = lead_pairs(pipeline)
    failing, hostile = pairs[0], pairs[1]
    admin.marketo.edit("person", failing["marketo_id"], {"firstName": HOSTILE_NAME})
    admin.marketo.edit("person", hostile["marketo_id"], {"title": HOSTILE_TITLE})
    aged = {
        "unchanged": age_activities(pipeline, ["unchanged"], 5),
        "linked": age_activities(pipeline, ["linked"], 2),
    }
    alerts_before = len(receiver.bodies)
    second = pipeline.sync()
    alerts_after_second = list(receiver.bodies[alerts_before:])
    pipeline.configs["target-merge"]["dry_run"] = True
    admin.dynamics.edit("lead", hostile["dynamics_id"], {"jobtitle": "Head of Growth (dry)"})
    # Only the Dynamics half of the job: the edit is there, and the merging leg is what a dry run is about.
    dry = pipeline.load("target-merge", pipeline.extract("tap-dynamics-leads"), "tap-dynamics-leads")
    assert dry.returncode == 0, dry.stderr[-3000:]
    pipeline.configs["target-merge"]["dry_run"] = False
    yield {
        "info": info,
        "admin": admin,
        "pipeline": pipeline,
        "receiver": receiver,
        "failing": failing,
        "hostile": hostile,
        "aged": aged,
        "runs": {"first": first, "second": second, "dry": dry},
        "alerts_after_second": alerts_after_second,
        "root": root,
    }
    receiver.close()


def run_ids(world: dict[str, Any]) -> list[str]:
    """Merge and dry-run ids, oldest first."""
    status = json.loads(mktdyn(world, "status", "--format", "json", "--limit", "20").stdout)
    return [r["run_id"] for r in reversed(status["runs"]) if r["mode"] in ("merge", "dry_run")]


def test_report_shows_the_newest_run_even_a_dry_one(world: dict[str, Any]) -> None:
    report = mktdyn(world, "report")
    assert report.returncode == 0, report.stderr
    assert "mode=dry_run" in report.stdout
    assert "DRY RUN: nothing was written" in report.stdout
    _first, second, _dry = run_ids(world)
    assert mktdyn(world, "report", "--run", second).stdout.count("mode=merge") == 1


def test_status_as_json(world: dict[str, Any]) -> None:
    status = json.loads(mktdyn(world, "status", "--format", "json").stdout)
    assert status["pairs"]["lead"] >= 2
    assert status["staged"]["marketo_leads"]["live"] >= 30
    assert [r["mode"] for r in status["runs"] if r["mode"] != "stage"][:2] == ["dry_run", "merge"]
    assert isinstance(status["pending_writes"], list)


def test_activity_of_one_person_across_runs_with_reasons_unabridged(world: dict[str, Any]) -> None:
    person = world["failing"]["marketo_id"]
    items = [
        json.loads(line)
        for line in mktdyn(world, "activity", "--person", person, "--format", "jsonl").stdout.splitlines()
    ]
    assert {i["person_id"] for i in items if i["person_id"]} == {person}
    assert len({i["run_id"] for i in items}) >= 2  # every run, not only the newest
    failure = next(i for i in items if i["action"] == "validation_failed")
    assert "firstname" in failure["error_message"]
    table = mktdyn(world, "activity", "--person", person).stdout
    header = table.splitlines()[0].split()
    assert header[:3] == ["at", "action", "person"]
    assert header[-1] == "reason"
    # The whole message is there, wrapped over lines, never cut with an ellipsis.
    words = " ".join(table.split())
    for word in failure["error_message"].split():
        assert word in words
    assert "…" not in table


def test_activity_filters_by_email_action_since_and_run(world: dict[str, Any]) -> None:
    person = world["hostile"]["marketo_id"]
    email = world["admin"].marketo.record("person", person)["email"]
    by_email = [
        json.loads(x)
        for x in mktdyn(world, "activity", "--email", email.upper(), "--format", "jsonl").stdout.splitlines()
    ]
    assert by_email
    assert all(i["person_id"] in (person, None) for i in by_email)
    assert any(i["dynamics_id"] == world["hostile"]["dynamics_id"] for i in by_email)
    failed = [
        json.loads(x)
        for x in mktdyn(world, "activity", "--action", "validation_failed", "--format", "jsonl").stdout.splitlines()
    ]
    assert failed
    assert {i["action"] for i in failed} == {"validation_failed"}
    assert mktdyn(world, "activity", "--since", "2999-01-01", "--format", "jsonl").stdout == ""
    recent = mktdyn(world, "activity", "--since", "1d", "--format", "jsonl").stdout.splitlines()
    assert recent
    assert all(json.loads(x)["at"] != OLD for x in recent)
    _first, second, _dry = run_ids(world)
    only_second = [
        json.loads(x) for x in mktdyn(world, "activity", "--run", second, "--format", "jsonl").stdout.splitlines()
    ]
    assert only_second
    assert {i["run_id"] for i in only_second} == {second}
    unknown = mktdyn(world, "activity", "--email", "nobody@nowhere.example")
    assert unknown.returncode == 1
    assert "nobody@nowhere.example" in unknown.stderr
    bad_since = mktdyn(world, "activity", "--since", "last tuesday")
    assert bad_since.returncode == 1
    assert bad_since.stderr.count("\n") == 1
    assert "--since" in bad_since.stderr


def test_dry_run_rows_are_marked(world: dict[str, Any]) -> None:
    table = mktdyn(world, "activity", "--person", world["hostile"]["marketo_id"]).stdout
    assert "updated (dry run)" in table or "collision (dry run)" in table
    assert "updated " in table.replace("(dry run)", "")


def test_report_as_json(world: dict[str, Any]) -> None:
    _first, second, _dry = run_ids(world)
    data = json.loads(mktdyn(world, "report", "--run", second, "--format", "json").stdout)
    assert data["run"]["run_id"] == second
    assert data["run"]["dry_run"] is False
    assert [h["mode"] for h in data["history"]] == ["merge", "merge", "dry_run"]
    failure = next(f for f in data["failures"]["items"] if f["person_id"] == world["failing"]["marketo_id"])
    assert "firstname" in failure["error_message"]
    assert data["failures"]["top_reasons"]
    assert any(row["action"] == "validation_failed" for row in data["timeline"])


def test_alert_when_record_failures_cross_the_threshold(world: dict[str, Any]) -> None:
    _first, second, _dry = run_ids(world)
    alerts = world["alerts_after_second"]
    assert [a["mktdyn"]["kind"] for a in alerts] == ["record_failures"]
    body = alerts[0]
    assert second in body["text"]
    assert body["mktdyn"]["run_id"] == second
    assert body["mktdyn"]["counts"]["validation_failed"] >= 1
    assert body["mktdyn"]["top_reasons"][0][0].startswith("validation_failed")
    assert "validation_failed" in body["text"]


def test_retention_prunes_old_unchanged_activities_only(world: dict[str, Any]) -> None:
    store = world["pipeline"].store()
    log = tables.activity_log
    with store.transaction() as connection:
        kept = set(connection.execute(sa.select(log.c.activity_id).where(log.c.at == OLD)).scalars())
        unchanged_left = connection.execute(
            sa.select(sa.func.count()).select_from(log).where(log.c.action == "unchanged")
        ).scalar()
    store.close()
    assert kept == set(world["aged"]["linked"])  # old, but not `unchanged`: kept
    assert unchanged_left  # recent unchanged rows stay


def test_html_report_in_a_real_browser(world: dict[str, Any], tmp_path: Path) -> None:
    """The page renders the chart, a failure's full reason and a person's timeline; no script injection, no errors."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")

    _first, second, _dry = run_ids(world)
    page_file = tmp_path / "report.html"
    made = mktdyn(world, "report", "--run", second, "--format", "html", "--output", str(page_file))
    assert made.returncode == 0, made.stderr
    assert "<link" not in page_file.read_text()  # self-contained: the browser requests nothing (checked below)
    data = json.loads(mktdyn(world, "report", "--run", second, "--format", "json").stdout)
    reason = next(f for f in data["failures"]["items"] if f["person_id"] == world["failing"]["marketo_id"])[
        "error_message"
    ]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            assert page.locator("#history-chart rect.bar").count() >= 3
            assert page.locator("#failures td.reason").filter(has_text=reason).count() == 1
            assert page.evaluate("window.__pwned") is None  # the hostile values stayed text
            assert page.locator("#conflicts, #ambiguous, #skipped, #pending").count() == 4
            page.fill("#timeline-search", world["failing"]["marketo_id"])
            rows = page.locator("#timeline-rows tr.timeline-row")
            assert rows.count() >= 2
            assert all(world["failing"]["marketo_id"] in rows.nth(i).inner_text() for i in range(rows.count()))
            assert rows.filter(has_text="validation_failed").count() >= 1
            email = world["admin"].marketo.record("person", world["hostile"]["marketo_id"])["email"]
            page.fill("#timeline-search", email)
            assert page.locator("#timeline-rows tr.timeline-row").filter(has_text="Growth").count() >= 1
            page.fill("#timeline-search", world["failing"]["marketo_id"])
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert [url for url in requests if url != page_file.as_uri()] == []
        finally:
            browser.close()
    assert errors == []
    if os.environ.get("MKTDYN_UPDATE_SCREENSHOT"):  # the README's picture: docs/report.png
        (Path(__file__).resolve().parents[2] / "docs" / "report.png").write_bytes(
            (tmp_path / "report.png").read_bytes()
        )


def test_alert_when_a_run_fails_carries_no_secret(world: dict[str, Any]) -> None:
    """Last in the module: it leaves a failed run behind."""
    pipeline, receiver, info = world["pipeline"], world["receiver"], world["info"]
    wrong = "wrong-secret-Zq8vX2"
    pipeline.configs["target-merge"]["marketo_client_secret"] = wrong
    before = len(receiver.bodies)
    # The merging leg alone, on the Dynamics extraction the dry run made: it fails at its first Marketo call.
    merged = pipeline.load("target-merge", pipeline.workdir / "tap-dynamics-leads.singer", "tap-dynamics-leads")
    pipeline.configs["target-merge"]["marketo_client_secret"] = info["marketo_client_secret"]
    assert merged.returncode != 0
    alerts = receiver.bodies[before:]
    assert [a["mktdyn"]["kind"] for a in alerts] == ["run_failed"]
    assert "run failed" in alerts[0]["text"]
    raw = b"".join(receiver.raw).decode()
    for secret in (
        wrong,
        info["marketo_client_secret"],
        info["dynamics_client_secret"],
        info["dynamics_password"],
        receiver.url,
    ):
        assert secret not in raw
