"""The store's write lock (docs/architecture.md §7): two runs never merge and write at once, on SQLite and PostgreSQL.

The process tests start real merging target processes against one store, straight from the CLI (so past
Meltano's own same-state-id guard), against the sandbox slowed down so that a merge phase lasts seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.lock import StoreLockedError, write_lock

from tests.target.pipeline import BIN, Pipeline

#: Added to every API request while a test needs a slow merge: a merge phase here makes about 20 requests,
#: so it lasts over 3 s, far longer than the time between two runs released at the same instant.
LATENCY = "latency_ms=150"
MERGE_PHASE_MIN_SECONDS = 2.0


# -- the lock itself, in one process ---------------------------------------------------------------
@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    opened.migrate()
    yield opened
    opened.close()


def test_a_held_lock_refuses_a_second_holder_that_does_not_wait(store: Store) -> None:
    other = Store(store.url)  # another engine, as another process would have
    try:
        with write_lock(store, wait=False, timeout_seconds=0):
            refusal = pytest.raises(StoreLockedError, match=r"setting 'lock_wait' is false")
            with refusal as refused, write_lock(other, wait=False, timeout_seconds=0):
                pytest.fail("two holders at once")
            assert "\n" not in str(refused.value)
            started = time.monotonic()
            timeout = pytest.raises(
                StoreLockedError, match=r"still held after 0.5 s \(setting 'lock_timeout_seconds'\)"
            )
            with timeout, write_lock(other, wait=True, timeout_seconds=0.5, poll_seconds=0.05):
                pytest.fail("two holders at once")
            assert time.monotonic() - started >= 0.5
        with write_lock(other, wait=False, timeout_seconds=0):  # released on exit
            pass
    finally:
        other.close()


def test_a_waiting_holder_gets_the_lock_when_the_first_lets_go(store: Store) -> None:
    other = Store(store.url)
    holding = threading.Event()
    events: list[str] = []

    def first() -> None:
        with write_lock(store, wait=False, timeout_seconds=0):
            events.append("first in")
            holding.set()
            time.sleep(0.5)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert holding.wait(10)
        with write_lock(other, wait=True, timeout_seconds=10, poll_seconds=0.05):
            events.append("second in")
    finally:
        thread.join()
        other.close()
    assert events == ["first in", "first out", "second in"]


def test_the_lock_is_released_when_the_block_fails(store: Store) -> None:
    with pytest.raises(RuntimeError), write_lock(store, wait=False, timeout_seconds=0):
        raise RuntimeError("merge failed")
    with write_lock(store, wait=False, timeout_seconds=0):
        pass


def test_an_in_memory_store_has_a_process_local_lock() -> None:
    store = Store("sqlite://")
    with (
        write_lock(store, wait=False, timeout_seconds=0),
        pytest.raises(StoreLockedError),
        write_lock(store, wait=False, timeout_seconds=0),
    ):
        pytest.fail("two holders at once")
    with (
        write_lock(Store("sqlite://"), wait=False, timeout_seconds=0),  # another memory store: its own lock
        write_lock(store, wait=False, timeout_seconds=0),
    ):
        pass


# -- merging processes against one store ----------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sandbox = Sandbox(
        SandboxOptions(
            directory=tmp_path_factory.mktemp("lock-sandbox"),
            persons=30,
            dynamics_only=5,
            overlap=0.6,
            seed=12,
            limits=False,
            export_delay=0.05,
        )
    )
    yield sandbox.start()
    sandbox.stop()


@pytest.fixture(scope="module")
def pipeline(sandbox_info: dict[str, Any], module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A store that has seen one whole sync; its Dynamics extract is replayed by every merging run below."""
    # Field metadata read every run (not reused from the store): each merge phase then talks to the slowed APIs
    # for seconds, long enough for the runs below to overlap.
    config = {"dry_run": True, "metadata_max_age_minutes": 0}
    synced = Pipeline(sandbox_info, tmp_path_factory.mktemp("lock"), config, store_url=module_store_url)
    synced.sync()
    return synced


@pytest.fixture
def slow_merges(sandbox_info: dict[str, Any]) -> Iterator[None]:
    admin = SandboxAdmin(sandbox_info)
    admin.marketo.faults(LATENCY)  # the SPEC is shared by both servers
    yield
    admin.marketo.faults("")
    admin.close()


class MergingRun:
    """One merging target process, fed the Dynamics extract; its input stays open until ``release``."""

    def __init__(self, pipeline: Pipeline, name: str, **config: Any) -> None:
        path = pipeline.workdir / f"{name}.json"
        path.write_text(json.dumps({**pipeline.configs["target-merge"], **config}))
        self.log = pipeline.workdir / f"{name}.stderr"
        with self.log.open("w") as log:  # a file, not a pipe: a chatty run must never block on a full pipe
            self.process = subprocess.Popen(
                [str(BIN / "target-mktdyn-merge"), "--config", str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        assert self.process.stdin is not None
        self.process.stdin.write((pipeline.workdir / "tap-dynamics-leads.singer").read_text())
        self.process.stdin.flush()
        self.exited_at = 0.0

    def release(self) -> None:
        """End the input: the process drains and goes for the write lock at once."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def wait(self) -> int:
        return self.process.wait(timeout=180)


def finish_together(*runs: MergingRun) -> None:
    """Wait for every run, noting when each one exited."""
    pending = list(runs)
    while pending:
        for run in list(pending):
            if run.process.poll() is not None:
                run.exited_at = time.monotonic()
                run.wait()
                pending.remove(run)
        time.sleep(0.02)


def writes_of(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Per merging run: its status, error, activities and outbox entries."""
    store = pipeline.store()
    try:
        with store.transaction() as connection:
            runs = connection.execute(sa.select(tables.runs).where(tables.runs.c.mode != "stage")).all()
            result: dict[str, dict[str, Any]] = {}
            for run in runs:
                activities = connection.execute(
                    sa.select(sa.func.count()).where(tables.activity_log.c.run_id == run.run_id)
                ).scalar()
                outbox = connection.execute(
                    sa.select(sa.func.count()).where(tables.outbox.c.run_id == run.run_id)
                ).scalar()
                result[run.run_id] = {
                    "status": run.status,
                    "error": run.error,
                    "activities": activities,
                    "outbox": outbox,
                }
        return result
    finally:
        store.close()


def new_runs(pipeline: Pipeline, before: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run_id, run in writes_of(pipeline).items() if run_id not in before]


@pytest.mark.usefixtures("slow_merges")
def test_two_runs_at_once_without_waiting_one_writes_and_the_other_exits_cleanly(pipeline: Pipeline) -> None:
    before = writes_of(pipeline)
    runs = [MergingRun(pipeline, f"nowait-{i}", lock_wait=False) for i in range(2)]
    for run in runs:
        run.release()
    finish_together(*runs)
    codes = sorted(run.process.returncode for run in runs)
    assert codes[0] == 0
    assert codes[1] != 0, "both runs merged: the second did not see the first one's lock"
    refused = next(run for run in runs if run.process.returncode != 0)
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("target-mktdyn-merge: another run holds the write lock of the store at ")
    assert "setting 'lock_wait' is false" in last_line
    if sa.engine.make_url(pipeline.store_url).password:
        assert ":***@" in last_line  # the store URL is shown without its password
    outcome = sorted(new_runs(pipeline, before), key=lambda r: r["status"])
    assert [r["status"] for r in outcome] == ["failed", "succeeded"]
    failed, succeeded = outcome
    assert "write lock" in failed["error"]
    assert failed["activities"] == failed["outbox"] == 0  # the refused run wrote nothing
    assert succeeded["activities"] > 0


@pytest.mark.usefixtures("slow_merges")
def test_two_runs_at_once_with_waiting_merge_one_after_the_other(pipeline: Pipeline) -> None:
    before = writes_of(pipeline)
    runs = [MergingRun(pipeline, f"wait-{i}", lock_wait=True, lock_timeout_seconds=120) for i in range(2)]
    for run in runs:
        run.release()
    finish_together(*runs)
    assert [run.process.returncode for run in runs] == [0, 0], [run.stderr[-2000:] for run in runs]
    first, second = sorted(runs, key=lambda run: run.exited_at)
    assert "another run holds the store's write lock; waiting" in second.stderr
    assert "waiting" not in first.stderr
    # The second merge phase (seconds long, against the slowed APIs) began only once the first one ended.
    assert second.exited_at - first.exited_at >= MERGE_PHASE_MIN_SECONDS
    outcome = new_runs(pipeline, before)
    assert [r["status"] for r in outcome] == ["succeeded", "succeeded"]
    assert all(r["activities"] > 0 for r in outcome)


@pytest.mark.usefixtures("slow_merges")
def test_a_killed_run_does_not_leave_the_store_locked(pipeline: Pipeline) -> None:
    store = pipeline.store()
    try:
        victim = MergingRun(pipeline, "victim", lock_wait=False)
        victim.release()
        deadline = time.monotonic() + 60
        while True:  # until the victim is inside its merge phase, holding the lock
            assert victim.process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never took the write lock"
            try:
                with write_lock(store, wait=False, timeout_seconds=0):
                    pass
            except StoreLockedError:
                break
            time.sleep(0.05)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.wait()
        started = time.monotonic()
        with write_lock(store, wait=True, timeout_seconds=30, poll_seconds=0.05):
            pass
        assert time.monotonic() - started < 5, "the killed run's lock outlived it"
    finally:
        store.close()
    after = pipeline.load("target-merge", pipeline.workdir / "tap-dynamics-leads.singer", "tap-dynamics-leads")
    assert after.returncode == 0, after.stderr[-2000:]


def test_the_lock_file_sits_beside_a_sqlite_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'nested' / 'store.db'}")
    with write_lock(store, wait=False, timeout_seconds=0):
        assert (tmp_path / "nested" / "store.db.lock").exists()
    store.close()
