"""The first extraction through the tap's CLI: export jobs in proportion to the data, pipelined within Marketo's
limits, and a SIGKILL in the middle of the pipeline resumed without losing a person."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from .tapcli import TAP, parse_output, run_tap, tap_config, tap_env

MakeSandbox = Callable[..., Sandbox]
PERSONS = 200  # the small seed of make_sandbox
WINDOW_LINE = re.compile(r"Window (\d+)/(\d+) \(\S+ to \S+\) emitted: (\d+) persons")


def _windows(stderr: str) -> list[int]:
    """Persons per emitted window, from the tap's progress lines."""
    return [int(match.group(3)) for match in WINDOW_LINE.finditer(stderr)]


def test_default_start_date_creates_export_jobs_only_for_windows_holding_data(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    admin = SandboxAdmin(sandbox.info)
    config = tap_config(sandbox.info)
    del config["start_date"]  # the default: Marketo's launch year, twenty years of empty calendar

    run = run_tap(tmp_path / "first", config)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.by_id()) == PERSONS
    per_window = _windows(run.stderr)
    holding_data = sum(1 for count in per_window if count)
    created = int(admin.marketo.stats().get("exports_created", 0))
    assert 0 < created <= holding_data + 1, (created, per_window)
    assert "Oldest person created" in run.stderr
    assert re.search(r"Export plan: \d+ export window\(s\) .* MB of today's 500 MB export allowance left", run.stderr)
    bookmark = run.state["bookmarks"]["marketo_leads"]
    assert "exports" not in bookmark
    assert "exports_until" not in bookmark


def test_pipeline_stays_within_marketos_queue_and_processing_limits(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox(export_delay=0.2)
    admin = SandboxAdmin(sandbox.info)
    admin.marketo.config(export_max_queued=3)  # another integration's jobs fill the rest of the queue
    config = tap_config(sandbox.info, window_days=7, export_pipeline_depth=6, poll_interval_seconds=0.05)

    run = run_tap(tmp_path / "limited", config)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.by_id()) == PERSONS
    stats = admin.marketo.stats()
    assert stats["exports_peak_processing"] == 2  # two at once, never more
    assert stats["exports_peak_active"] == 3  # the queue was used to its (lowered) limit, never beyond
    assert "export queue is full" in run.stderr  # and the tap waited instead of failing
    assert len(_windows(run.stderr)) >= 8


@pytest.mark.parametrize("depth", [1, 4])
def test_records_come_out_in_window_order_and_the_bookmark_only_passes_emitted_windows(
    make_sandbox: MakeSandbox, tmp_path: Path, depth: int
) -> None:
    sandbox = make_sandbox(export_delay=0.1)
    config = tap_config(sandbox.info, window_days=7, export_pipeline_depth=depth)
    (tmp_path / "config.json").write_text(json.dumps(config))
    completed = subprocess.run(
        [TAP, "--config", str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        env=tap_env(),
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    bookmark: str | None = None
    in_flight: list[int] = []
    records = 0
    for line in completed.stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "STATE":
            value = message["value"]["bookmarks"]["marketo_leads"]
            moved = value.get("replication_key_value")
            assert bookmark is None or moved >= bookmark  # never backwards
            bookmark = moved
            in_flight.append(len(value.get("exports", [])))
        elif message["type"] == "RECORD" and message["record"]["_sdc_deleted_at"] is None:
            records += 1
            # A record comes after every window before its own was emitted: its change is not before the
            # bookmark (the seed's visible updatedAt is its last change).
            assert bookmark is None or message["record"]["updatedAt"] >= bookmark, (message["record"], bookmark)
    assert records == PERSONS
    assert max(in_flight) == depth  # as many windows in flight at once as asked, no more


def test_a_tap_killed_mid_pipeline_resumes_from_its_last_state_without_losing_a_person(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox(export_delay=0.1)
    admin = SandboxAdmin(sandbox.info)
    config = tap_config(sandbox.info, window_days=7, export_pipeline_depth=3)
    (tmp_path / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [TAP, "--config", str(tmp_path / "config.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=tap_env(),
    )
    kept: list[str] = []
    emitted_windows = 0
    assert process.stdout is not None
    try:
        for line in process.stdout:
            kept.append(line)
            message = json.loads(line)
            if message["type"] == "STATE" and message["value"]["bookmarks"]["marketo_leads"].get(
                "replication_key_value"
            ):
                emitted_windows += 1
            # Kill in the middle of the third window, with later windows queued in Marketo.
            if emitted_windows == 2 and message["type"] == "RECORD":
                process.kill()
                break
    finally:
        process.kill()
        process.wait(10)
    assert process.returncode == -9
    # What a target would have committed: the records before the last STATE line it saw.
    last_state = max(i for i, line in enumerate(kept) if json.loads(line)["type"] == "STATE")
    committed, states, _ = parse_output("".join(kept[: last_state + 1]))
    state = states[-1]
    in_flight = state["bookmarks"]["marketo_leads"]["exports"]
    assert len(in_flight) >= 2  # the window being read and at least one queued behind it
    assert len({r["id"] for r in committed}) < PERSONS
    created_before = int(admin.marketo.stats().get("exports_created", 0))

    resumed = run_tap(tmp_path / "resumed", config, state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ids = {r["id"] for r in committed} | {r["id"] for r in resumed.records}
    assert len(ids) == PERSONS  # every person, none lost
    for export in in_flight:
        assert f"Resuming export {export['id']}" in resumed.stderr  # queued jobs reused, not paid for twice
    created_after = int(admin.marketo.stats().get("exports_created", 0))
    total_windows = len(_windows(resumed.stderr))
    assert created_after - created_before == total_windows - len(in_flight)
    bookmark = resumed.state["bookmarks"]["marketo_leads"]
    assert "exports" not in bookmark
    assert "exports_until" not in bookmark
    assert bookmark["replication_key_value"] == state["bookmarks"]["marketo_leads"]["exports_until"]


def test_an_error_mid_pipeline_cancels_the_queued_jobs_and_keeps_the_next_window_for_the_next_run(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox(export_delay=0.1)
    admin = SandboxAdmin(sandbox.info)
    admin.marketo.config(export_daily_quota_mb=0.001)  # the first file spends the day's allowance
    config = tap_config(sandbox.info, window_days=7, export_pipeline_depth=3, export_daily_allowance_mb=0.001)
    (tmp_path / "config.json").write_text(json.dumps(config))
    completed = subprocess.run(
        [TAP, "--config", str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        env=tap_env(),
        timeout=90,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "1029" in completed.stderr
    assert re.search(r"Cancelled \d+ queued export\(s\) after the error", completed.stderr)
    assert "will likely exceed today's export allowance" in completed.stderr  # said before Marketo refuses
    stats = admin.marketo.stats()
    _, states, _ = parse_output(completed.stdout)
    last = states[-1]["bookmarks"]["marketo_leads"]
    # The next window's job stays in the state for the next run; nothing else is left queued in Marketo.
    assert len(last["exports"]) == 1
    emitted = len(_windows(completed.stderr))
    assert emitted >= 1
    assert stats["exports_cancelled"] >= 1
    assert stats["exports_created"] == emitted + len(last["exports"]) + stats["exports_cancelled"]
