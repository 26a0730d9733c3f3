"""``mktdyn`` as a good citizen: read commands never create or migrate a store, mistakes are one line, pipes close.

- A missing SQLite file, an empty database or a database that is not a store: one line naming the URL (password
  hidden), exit 1, and nothing is created or changed.
- An older schema names ``mktdyn db upgrade``, the one command that migrates; a newer one is refused.
- An unknown run, an unmapped field, an unlinked person: one line, exit 1.
- ``mktdyn status | head -1``: the reader goes away; mktdyn ends quietly.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store

from tests.target.test_cli import MKTDYN, mktdyn

READ_COMMANDS = [["status"], ["report"], ["activity"], ["activity", "--format", "jsonl"]]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mktdyn: ")
    return lines[0]


def store_at_version(path: Path, version: int) -> str:
    """A store whose schema is at ``version`` (older, current or newer than this release's)."""
    url = f"sqlite:///{path}"
    store = Store(url)
    with store.transaction() as connection:
        tables.schema_version.create(connection)
        for number in range(1, min(version, tables.LATEST_VERSION) + 1):
            tables.MIGRATIONS[number - 1](connection)
            connection.execute(sa.insert(tables.schema_version).values(version=number, applied_at=now_iso()))
        if version > tables.LATEST_VERSION:
            connection.execute(sa.insert(tables.schema_version).values(version=version, applied_at=now_iso()))
    store.close()
    return url


def store_with_a_run(path: Path) -> tuple[str, str]:
    url = store_at_version(path, tables.LATEST_VERSION)
    store = Store(url)
    run_id = store.start_run("merge")
    store.finish_run(run_id, "succeeded")
    store.close()
    return url, run_id


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_missing_store_is_named_and_not_created(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "typo" / "stroe.db"
    line = one_line(mktdyn(*command, store_url=f"sqlite:///{path}"))
    assert line == (
        f"mktdyn: no store at sqlite:///{path}: the file does not exist (check --store-url / MKTDYN_STORE_URL; "
        "the first sync creates the store)"
    )
    assert not path.parent.exists()


@pytest.mark.parametrize("content", ["empty", "other-database"])
def test_a_database_that_is_not_a_store_is_named_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "some.db"
    if content == "empty":
        path.touch()
    else:
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE customers (id INTEGER)")
        connection.close()
    before = path.read_bytes()
    line = one_line(mktdyn("status", store_url=f"sqlite:///{path}"))
    assert line == (
        f"mktdyn: sqlite:///{path} holds no mktdyn store (no schema_version table; check --store-url / "
        "MKTDYN_STORE_URL)"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some.db"]  # no -wal / -shm files either


def test_an_older_schema_is_not_migrated_by_a_read_and_db_upgrade_upgrades_it(tmp_path: Path) -> None:
    older = tables.LATEST_VERSION - 1
    url = store_at_version(tmp_path / "store.db", older)
    line = one_line(mktdyn("report", store_url=url))
    assert f"has schema version {older}, older than this release's {tables.LATEST_VERSION}" in line
    assert "upgrade it with `mktdyn db upgrade`" in line
    with sqlite3.connect(tmp_path / "store.db") as connection:
        assert connection.execute("SELECT max(version) FROM schema_version").fetchone() == (older,)
    connection.close()

    upgraded = mktdyn("db", "upgrade", store_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout == (f"upgraded the store at {url} from schema version {older} to {tables.LATEST_VERSION}\n")
    again = mktdyn("db", "upgrade", store_url=url)
    assert again.stdout == f"the store at {url} is already at schema version {tables.LATEST_VERSION}\n"
    status = mktdyn("status", store_url=url)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("Linked pairs: none")


def test_db_upgrade_creates_a_store_when_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
    created = mktdyn("db", "upgrade", store_url=url)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"created the store at {url} (schema version {tables.LATEST_VERSION})\n"
    assert mktdyn("status", store_url=url).returncode == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    newer = tables.LATEST_VERSION + 1
    url = store_at_version(tmp_path / "store.db", newer)
    for command in (["status"], ["db", "upgrade"]):
        line = one_line(mktdyn(*command, store_url=url))
        assert f"has schema version {newer}, newer than this release" in line


def test_the_url_in_an_error_hides_the_password() -> None:
    base = os.environ.get("MKTDYN_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("MKTDYN_TEST_POSTGRES_URL is not set")
    parsed = sa.engine.make_url(base)
    assert parsed.password
    url = parsed.set(database="mktdyn_no_such_database").render_as_string(hide_password=False)
    line = one_line(mktdyn("status", store_url=url))
    assert line.startswith(f"mktdyn: cannot open the store at {parsed.set(database='mktdyn_no_such_database')}")
    assert "***" in line
    assert str(parsed.password) not in line


def test_unknown_run_field_and_person_are_one_line_errors(tmp_path: Path) -> None:
    url, run_id = store_with_a_run(tmp_path / "store.db")
    assert mktdyn("report", "--run", run_id, store_url=url).returncode == 0
    for command, expected in [
        (["report", "--run", "20200101T000000000000Z-nope"], "no run '20200101T000000000000Z-nope' in the store at"),
        (["activity", "--run", "nope"], "no run 'nope' in the store at"),
        (["resync", "--field", "titel"], "field 'titel' is not a Marketo field of the field map (setting field_map"),
        (["resync", "--field", "title", "--person", "999999"], "person 999999 is not linked"),
        (["unlink", "999999"], "person 999999 is not linked"),
    ]:
        assert expected in one_line(mktdyn(*command, store_url=url)), command
    resynced = mktdyn("resync", "--field", "title", store_url=url)
    assert resynced.returncode == 0, resynced.stderr
    assert resynced.stdout.startswith("baseline of 'title' forgotten on 0 pair(s)")


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url, _ = store_with_a_run(tmp_path / "store.db")
    store = Store(url)
    with store.transaction() as connection:  # enough runs for more output than a pipe buffers
        connection.execute(
            sa.insert(tables.runs),
            [
                {"run_id": f"20260101T{n:012d}Z-x", "mode": "merge", "status": "succeeded", "started_at": now_iso()}
                for n in range(4000)
            ],
        )
    store.close()
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {MKTDYN} --store-url '{url}' status --limit 4000 | head -1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Linked pairs: ")
    assert result.stderr == ""
