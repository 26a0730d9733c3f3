"""``mktdyn unlink`` and ``resync`` take the store's write lock (issue 22, item 6).

A ``resync`` during a write-back used to print success and be undone by the running merge. The lock is held
here as the merge holds it (``lock.write_lock`` in this process; the CLI runs as its own process), on each
store backend, since the lock's kind is the backend's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.lock import write_lock

from tests.store_backends import BACKENDS, fresh_store_url

MKTDYN = str(Path(sys.executable).parent / "mktdyn")
BASELINE = {"title": {"marketo": "CEO", "dynamics": "CEO"}}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store_url(request.param, tmp_path) as url:
        opened = Store(url)
        opened.migrate()
        with opened.transaction() as connection:
            connection.execute(
                sa.insert(tables.pairs).values(
                    marketo_id="101",
                    entity="lead",
                    dynamics_id="lead-1",
                    authority="marketo",
                    linked_at="2024-06-01T00:00:00Z",
                    linked_run="r",
                    baseline=json.dumps(BASELINE),
                )
            )
        try:
            yield opened
        finally:
            opened.close()


def mktdyn(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MKTDYN, "--store-url", store.url, *args], capture_output=True, text=True, timeout=120)


def pair_baseline(store: Store) -> dict[str, object] | None:
    with store.transaction() as connection:
        row = connection.execute(sa.select(tables.pairs.c.baseline).where(tables.pairs.c.marketo_id == "101")).first()
    return None if row is None else dict(json.loads(row.baseline))


def test_unlink_and_resync_refuse_while_a_run_holds_the_lock(store: Store) -> None:
    with write_lock(store, wait=False, timeout_seconds=0):
        for args in (("unlink", "101"), ("resync", "--field", "title"), ("resync", "--field", "title", "--wait", "1")):
            result = mktdyn(store, *args)
            assert result.returncode == 1, args
            assert result.stdout == ""  # no success printed
            lines = result.stderr.strip().splitlines()
            assert len(lines) == (2 if "--wait" in args else 1), lines  # waiting says so first
            assert lines[-1].startswith("mktdyn: a sync run holds the write lock"), lines[0]
            assert "nothing was changed" in lines[-1]
    assert pair_baseline(store) == BASELINE  # neither command changed anything


def test_resync_and_unlink_wait_for_the_lock(store: Store) -> None:
    released = threading.Event()

    def hold() -> None:
        with write_lock(store, wait=False, timeout_seconds=0):
            held.set()
            time.sleep(2)
        released.set()

    held = threading.Event()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    result = mktdyn(store, "resync", "--field", "title", "--wait", "30")
    holder.join()
    assert result.returncode == 0, result.stderr
    assert released.is_set()
    assert "forgotten on 1 pair(s)" in result.stdout
    assert pair_baseline(store) == {}
    unlinked = mktdyn(store, "unlink", "101")
    assert unlinked.returncode == 0, unlinked.stderr
    assert pair_baseline(store) is None
