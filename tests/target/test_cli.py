"""The ``mktdyn`` command: report, activity log, status, unlink, resync, and the ``check`` preflight."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mktdyn_sandbox.sandbox import Sandbox
from target_mktdyn_merge.store.database import Store

from tests.target.pipeline import Pipeline, connection_config

MKTDYN = str(Path(sys.executable).parent / "mktdyn")


def mktdyn(*args: str, store_url: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--store-url", store_url] if store_url else []
    return subprocess.run([MKTDYN, *prefix, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def synced(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> Pipeline:
    sandbox = make_sandbox(persons=30, dynamics_only=4, overlap=0.7, seed=3)
    pipeline = Pipeline(sandbox.info, tmp_path / "work", {"dry_run": False})
    pipeline.sync()
    return pipeline


def test_report_activity_and_status(synced: Pipeline) -> None:
    report = mktdyn("report", store_url=synced.store_url)
    assert report.returncode == 0, report.stderr
    assert "mode=merge  status=succeeded" in report.stdout
    assert "linked" in report.stdout
    lines = mktdyn("activity", "--format", "jsonl", store_url=synced.store_url).stdout.splitlines()
    items = [json.loads(line) for line in lines]
    assert {"linked", "unchanged"} <= {i["action"] for i in items}
    assert all(i["run_id"] == items[0]["run_id"] for i in items)
    table = mktdyn("activity", store_url=synced.store_url).stdout
    assert table.splitlines()[0].split()[:3] == ["at", "action", "person"]
    status = mktdyn("status", store_url=synced.store_url).stdout
    assert status.startswith("Linked pairs: ")
    assert "Pending writes: none" in status


def test_unlink_and_resync(synced: Pipeline) -> None:
    pair = next(p for p in synced_pairs(synced) if "title" in p["baseline"])
    result = mktdyn("unlink", pair["marketo_id"], store_url=synced.store_url)
    assert result.returncode == 0, result.stderr
    assert pair["marketo_id"] not in {p["marketo_id"] for p in synced_pairs(synced)}
    again = mktdyn("unlink", pair["marketo_id"], store_url=synced.store_url)
    assert again.returncode == 1
    assert f"person {pair['marketo_id']} is not linked" in again.stderr
    resync = mktdyn("resync", "--field", "title", store_url=synced.store_url)
    assert resync.returncode == 0
    assert all("title" not in p["baseline"] for p in synced_pairs(synced))
    # the next run re-merges every pair (the forgotten baselines come back) and links the unlinked person again
    synced.sync()
    pairs = synced_pairs(synced)
    assert pair["marketo_id"] in {p["marketo_id"] for p in pairs}
    assert all("title" in p["baseline"] for p in pairs if p["entity"] in ("lead", "contact"))


def synced_pairs(pipeline: Pipeline) -> list[dict[str, Any]]:
    import sqlalchemy as sa
    from target_mktdyn_merge.store import schema as tables

    store = pipeline.store()
    with store.transaction() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(tables.pairs)).all()]
    store.close()
    for row in rows:
        row["baseline"] = json.loads(row["baseline"])
    return rows


def test_report_on_a_store_without_runs_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = Store(url)
    store.migrate()  # read commands no longer create a store (tests/target/test_cli_store.py): make one
    store.close()
    result = mktdyn("report", store_url=url)
    assert result.returncode == 1
    assert "the store holds no run yet" in result.stderr


def test_check_passes_against_the_sandbox(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(connection_config(sandbox_info)))
    result = mktdyn("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout
    assert "FAIL" not in result.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"marketo_client_secret": "not-the-secret"}, "check the settings marketo_client_id and marketo_client_secret"),
        ({"dynamics_base_url": "http://crm.example.com"}, "setting 'dynamics_base_url'"),
        ({"sync_filter_field": "new_nosuchcolumn"}, "Dynamics has no column 'new_nosuchcolumn'"),
        ({"field_map": {"lead": {"title": {"dynamics": "jobtitel"}}}}, "jobtitel"),
        ({"create_in_dynamics": "sometimes"}, "setting create_in_dynamics"),
    ],
    ids=["wrong-secret", "plain-http", "missing-filter-column", "unknown-column", "bad-option"],
)
def test_check_names_what_is_wrong(
    sandbox_info: dict[str, Any], tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**connection_config(sandbox_info), **change}))
    result = mktdyn("check", "--config", str(config))
    assert result.returncode == 1
    assert expected in result.stdout
    assert "not-the-secret" not in result.stdout + result.stderr
