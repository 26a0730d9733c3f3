"""The tap end to end, through its CLI, against fresh sandboxes: increments, deletes, resume, fallback, faults."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from .tapcli import TAP, run_tap, tap_config, tap_env

MakeSandbox = Callable[..., Sandbox]


def _admin(sandbox: Sandbox) -> SandboxAdmin:
    return SandboxAdmin(sandbox.info)


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def test_second_run_returns_only_persons_changed_since_and_deletes(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox()
    admin = _admin(sandbox)
    config = tap_config(sandbox.info)
    first = run_tap(tmp_path / "first", config)
    assert first.returncode == 0, first.stderr
    assert len(first.by_id()) == 200
    assert "export" not in first.state["bookmarks"]["marketo_leads"]

    before = first.by_id()[9]
    admin.marketo.edit("person", 5, {"firstName": "Renamed"})
    admin.marketo.edit("person", 9, {"dynamicsLeadId": "0b7f2c1e-lead"})  # custom field only
    admin.marketo.delete("person", 12)
    stored = admin.marketo.record("person", 9)
    assert stored is not None
    assert stored["updatedAt"] == before["updatedAt"]  # visible updatedAt unmoved

    # Export windows end on a whole second: an edit in the same second as the next run's start is exported
    # by the run after it (windows overlap by a minute). Step past that second to see every edit now.
    time.sleep(1.1)
    second = run_tap(tmp_path / "second", config, first.state)
    assert second.returncode == 0, second.stderr
    changed = [r for r in second.records if r["_sdc_deleted_at"] is None]
    assert sorted(r["id"] for r in changed) == [5, 9]
    assert second.by_id()[5]["firstName"] == "Renamed"
    assert second.by_id()[9]["dynamicsLeadId"] == "0b7f2c1e-lead"
    deletes = [r for r in second.records if r["_sdc_deleted_at"] is not None]
    assert [r["id"] for r in deletes] == [12]
    delete = deletes[0]
    assert delete["updatedAt"] == delete["_sdc_deleted_at"]
    assert all(v is None for k, v in delete.items() if k not in ("id", "updatedAt", "_sdc_deleted_at"))
    assert (
        second.state["bookmarks"]["marketo_leads"]["replication_key_value"]
        > first.state["bookmarks"]["marketo_leads"]["replication_key_value"]
    )


def test_interrupted_export_is_resumed_not_recreated(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox(export_delay=2.0)
    admin = _admin(sandbox)
    config = tap_config(sandbox.info, days=20, window_days=31, poll_interval_seconds=0.2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [TAP, "--config", str(tmp_path / "config.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=tap_env(),
    )
    interrupted_state: dict[str, Any] | None = None
    assert process.stdout is not None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if message["type"] == "STATE" and message["value"]["bookmarks"].get("marketo_leads", {}).get("exports"):
                interrupted_state = message["value"]
                break
    finally:
        process.kill()
        process.wait(10)
    assert interrupted_state is not None
    export_id = interrupted_state["bookmarks"]["marketo_leads"]["exports"][0]["id"]
    assert _exports_created(admin.marketo.stats()) == 1

    resumed = run_tap(tmp_path / "resumed", config, interrupted_state)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming export {export_id}" in resumed.stderr
    stats = admin.marketo.stats()
    assert _exports_created(stats) == 1
    assert resumed.records
    assert all(r["_sdc_deleted_at"] is None for r in resumed.records)
    assert "export" not in resumed.state["bookmarks"]["marketo_leads"]
    assert "exports" not in resumed.state["bookmarks"]["marketo_leads"]


def _exports_created(stats: dict[str, Any]) -> int:
    return int(stats.get("exports_created", 0))


def test_activity_feed_fallback_returns_the_same_persons(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox()
    admin = _admin(sandbox)
    admin.marketo.config(export_file_noise=True)  # NUL bytes and bare CRs, as real files have
    config = tap_config(sandbox.info)
    bulk = run_tap(tmp_path / "bulk", config)
    assert bulk.returncode == 0, bulk.stderr

    admin.marketo.config(updated_at_filter=False)
    feed = run_tap(tmp_path / "feed", config)
    assert feed.returncode == 0, feed.stderr
    assert "1035" in feed.stderr
    assert feed.by_id().keys() == bulk.by_id().keys()
    for person_id, record in bulk.by_id().items():
        assert _comparable(feed.by_id()[person_id]) == _comparable(record), person_id
    bookmark = feed.state["bookmarks"]["marketo_leads"]
    assert bookmark["updated_at_filter"] is False
    assert bookmark["activity_token"]

    admin.marketo.edit("person", 7, {"syncToDynamics": True})
    again = run_tap(tmp_path / "feed-again", config, feed.state)
    assert again.returncode == 0, again.stderr
    assert "1035" not in again.stderr  # remembered: no probe export
    assert [r["id"] for r in again.records] == [7]
    assert again.records[0]["syncToDynamics"] is True


def test_recovers_from_rate_limits_expired_tokens_and_resets(make_sandbox: MakeSandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox(faults="marketo.606=0.12,marketo.615=0.12,marketo.602=0.12,marketo.reset=0.12")
    config = tap_config(sandbox.info)
    run = run_tap(tmp_path / "faulty", config, env=tap_env(TAP_MARKETO_LEADS_LOGLEVEL="DEBUG"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.by_id()) == 200
    for signal in ("606", "615", "602", "Connection"):
        assert signal in run.stderr, signal
    assert config["client_secret"] not in run.stderr


def test_catalog_selection_limits_requested_fields_and_skips_describe(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    admin = _admin(sandbox)
    config = tap_config(sandbox.info)
    discovered = run_tap(tmp_path / "discover", config, None, None, "--discover")
    assert discovered.returncode == 0, discovered.stderr
    catalog = discovered.schemas[0]
    entry = catalog["streams"][0]
    metadata = {tuple(m["breadcrumb"]): m["metadata"] for m in entry["metadata"]}
    assert metadata[("properties", "updatedAt")]["marketo-read-only"] is True
    assert metadata[("properties", "syncToDynamics")]["inclusion"] == "automatic"
    assert metadata[("properties", "email")]["inclusion"] == "automatic"
    for breadcrumb, item in metadata.items():
        item["selected"] = breadcrumb in ((), ("properties", "firstName"))

    admin.marketo.reset_stats()
    run = run_tap(tmp_path / "selected", config, None, catalog)
    assert run.returncode == 0, run.stderr
    assert set(run.records[0]) == {"id", "updatedAt", "email", "syncToDynamics", "firstName", "_sdc_deleted_at"}
    assert admin.marketo.stats()["requests"].get("leads describe", 0) == 0  # the catalog's schema was used


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"client_secret": None}, "client_secret"),
        ({"base_url": "http://123-abc-456.mktorest.com"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
    ],
)
def test_bad_config_fails_naming_the_setting(
    sandbox_info: dict[str, Any], tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    config = {k: v for k, v in {**tap_config(sandbox_info), **change}.items() if v is not None}
    run = run_tap(tmp_path, config)
    assert run.returncode != 0
    assert words in run.stderr
    assert "Traceback" not in run.stderr
