"""Staging through the real target CLI (merge: false): idempotent, newest wins, unknown is not blank.

Every test that touches the store runs on both backends (the ``store_url`` fixture: SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from target_mktdyn_merge.store.database import Store

TARGET = [sys.executable, "-m", "target_mktdyn_merge.plugin.target"]
PERSON_SCHEMA = {
    "type": "SCHEMA",
    "stream": "marketo_leads",
    "key_properties": ["id"],
    "bookmark_properties": ["updatedAt"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": ["string", "null"]},
            "firstName": {"type": ["string", "null"]},
            "lastName": {"type": ["string", "null"]},
            "updatedAt": {"type": ["string", "null"], "format": "date-time"},
            "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}


def person(pid: int, updated: str, **fields: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "marketo_leads", "record": {"id": pid, "updatedAt": updated, **fields}}


def run_target(
    tmp_path: Path, store_url: str, messages: list[dict[str, Any]], **config: Any
) -> subprocess.CompletedProcess[str]:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"store_url": store_url, "merge": False, **config}))
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    return subprocess.run(
        [*TARGET, "--config", str(config_path)], input=lines, capture_output=True, text=True, timeout=120
    )


def staged(store_url: str, record_id: str) -> dict[str, Any]:
    store = Store(store_url)
    record = store.staged_record("marketo_leads", record_id)
    store.close()
    assert record is not None
    return {
        "fields": record.fields,
        "deleted_at": record.deleted_at,
        "source_ts": record.source_ts,
        "changed_seq": record.changed_seq,
    }


def test_stage_then_state_on_stdout_only(tmp_path: Path, store_url: str) -> None:
    state = {"type": "STATE", "value": {"bookmarks": {"marketo_leads": {"replication_key_value": "x"}}}}
    result = run_target(
        tmp_path,
        store_url,
        [PERSON_SCHEMA, person(1, "2026-01-02T03:04:05+00:00", email="A@x.com", firstName="Ada"), state],
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert [json.loads(line) for line in lines] == [state["value"]]
    row = staged(store_url, "1")
    assert row["fields"] == {"id": 1, "email": "A@x.com", "firstName": "Ada", "updatedAt": "2026-01-02T03:04:05Z"}
    assert row["source_ts"] == "2026-01-02T03:04:05Z"


def test_replay_changes_nothing_and_older_versions_lose(tmp_path: Path, store_url: str) -> None:
    first = [PERSON_SCHEMA, person(1, "2026-01-02T00:00:00Z", email="a@x.com", firstName="Ada")]
    assert run_target(tmp_path, store_url, first).returncode == 0
    before = staged(store_url, "1")
    assert run_target(tmp_path, store_url, first).returncode == 0
    assert staged(store_url, "1") == before  # replay: same content, same change sequence
    older = [PERSON_SCHEMA, person(1, "2026-01-01T00:00:00Z", email="a@x.com", firstName="Old")]
    assert run_target(tmp_path, store_url, older).returncode == 0
    assert staged(store_url, "1") == before
    newer = [PERSON_SCHEMA, person(1, "2026-01-03T00:00:00Z", email="a@x.com", firstName="New")]
    assert run_target(tmp_path, store_url, newer).returncode == 0
    after = staged(store_url, "1")
    assert after["fields"]["firstName"] == "New"
    assert after["changed_seq"] > before["changed_seq"]


def test_same_timestamp_later_arrival_wins_and_unknown_is_not_blank(tmp_path: Path, store_url: str) -> None:
    messages = [
        PERSON_SCHEMA,
        person(7, "2026-01-02T00:00:00Z", email="b@x.com", firstName="First", lastName="Last"),
        person(7, "2026-01-02T00:00:00Z", email="b@x.com", firstName="Second"),
    ]
    assert run_target(tmp_path, store_url, messages).returncode == 0
    fields = staged(store_url, "7")["fields"]
    assert fields["firstName"] == "Second"
    assert "lastName" not in fields  # not sent in the newest version: unknown, not blank


def test_delete_record_keeps_known_fields(tmp_path: Path, store_url: str) -> None:
    assert (
        run_target(tmp_path, store_url, [PERSON_SCHEMA, person(3, "2026-01-02T00:00:00Z", email="c@x.com")]).returncode
        == 0
    )
    delete = {
        "type": "RECORD",
        "stream": "marketo_leads",
        "record": {
            "id": 3,
            "updatedAt": "2026-01-05T00:00:00Z",
            "email": None,
            "_sdc_deleted_at": "2026-01-05T00:00:00Z",
        },
    }
    assert run_target(tmp_path, store_url, [PERSON_SCHEMA, delete], add_record_metadata=False).returncode == 0
    row = staged(store_url, "3")
    assert row["deleted_at"] == "2026-01-05T00:00:00Z"
    assert row["fields"]["email"] == "c@x.com"


def test_unknown_stream_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    schema = {**PERSON_SCHEMA, "stream": "salesforce_leads"}
    result = run_target(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", [schema])
    assert result.returncode != 0
    assert "stream 'salesforce_leads' is not one target-mktdyn-merge can merge" in result.stderr
    assert result.stdout.strip() == ""


def test_runs_are_recorded(tmp_path: Path, store_url: str) -> None:
    assert (
        run_target(tmp_path, store_url, [PERSON_SCHEMA, person(1, "2026-01-02T00:00:00Z", email="a@x.com")]).returncode
        == 0
    )
    store = Store(store_url)
    with store.transaction() as connection:
        rows = connection.execute(sa.text("SELECT mode, status FROM runs")).all()
    store.close()
    assert [tuple(r) for r in rows] == [("stage", "succeeded")]


def run_times(tmp_path: Path, store_url: str, time_extracted: Any) -> tuple[datetime, datetime]:
    """(started_at, read_from) of a staging run whose first record says it was extracted at ``time_extracted``."""
    record = {**person(1, "2026-01-02T00:00:00Z", email="a@x.com"), "time_extracted": time_extracted}
    assert run_target(tmp_path, store_url, [PERSON_SCHEMA, record]).returncode == 0
    store = Store(store_url)
    try:
        [run_id] = [run["run_id"] for run in store.runs()]
        times = store.run_started_at(run_id), store.run_read_from(run_id)
    finally:
        store.close()
    started, read_from = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times)
    return started, read_from


def test_a_run_reads_from_when_its_tap_read_if_that_was_before_the_target_started(
    tmp_path: Path, store_url: str
) -> None:
    """Fed a file a tap wrote an hour ago, the run read from then, not from the target's start (architecture §10).

    "Nothing this run staged was read before ``read_from``" decides which confirmed writes an extraction has seen
    and whether a lead found at write time appeared since the extraction. The run's start stays the target's:
    runs are ordered and timed by it.
    """
    before = datetime.now(UTC).replace(microsecond=0)
    an_hour_ago = before - timedelta(hours=1)
    started, read_from = run_times(tmp_path, store_url, an_hour_ago.isoformat())
    assert read_from == an_hour_ago
    assert before <= started <= datetime.now(UTC)


def test_a_later_extraction_time_leaves_read_from_at_the_target_start(tmp_path: Path, store_url: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    started, read_from = run_times(tmp_path, store_url, (before + timedelta(hours=1)).isoformat())
    assert read_from == started
    assert before <= started <= datetime.now(UTC)


def test_a_far_future_timestamp_does_not_block_later_versions(tmp_path: Path, store_url: str) -> None:
    """Issue 22, item 5: a source timestamp more than a day ahead is staged as of now, with a warning."""
    future = [PERSON_SCHEMA, person(9, "2099-01-01T00:00:00Z", email="f@x.com", firstName="From the future")]
    result = run_target(tmp_path, store_url, future)
    assert result.returncode == 0, result.stderr
    assert "more than a day ahead of now (id=9)" in result.stderr
    first = staged(store_url, "9")
    assert first["fields"]["updatedAt"] == "2099-01-01T00:00:00Z"  # the value itself is kept as sent
    assert first["source_ts"] < "2099"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)
    later = [PERSON_SCHEMA, person(9, (datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"), firstName="Real edit")]
    result = run_target(tmp_path, store_url, later)
    assert result.returncode == 0, result.stderr
    assert "older than staged" in result.stderr  # the summary line: 0 of them
    assert ", 0 older than staged" in result.stderr
    after = staged(store_url, "9")
    assert after["fields"]["firstName"] == "Real edit"
    assert after["source_ts"] > now
    # Within the tolerance a timestamp is believed as it is (a clock a little ahead is normal).
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run_target(tmp_path, store_url, [PERSON_SCHEMA, person(10, soon, firstName="Soon")]).returncode == 0
    assert staged(store_url, "10")["source_ts"] == soon
