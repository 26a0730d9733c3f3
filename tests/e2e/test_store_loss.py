"""A store that does not match Meltano's bookmarks is refused, and the recovery it names works (issue 21, item 8).

The job runs through real Meltano; then the store is deleted while Meltano keeps its state (a fresh worker, a
lost volume). The next run's taps extract only changes since their bookmarks: before the fix it merged that
into the empty store and silently diverged. Now it stops with one line naming the recovery, writes nothing to
either system, and following the line (clear the job's state, run again) ends where the first run ended.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store

from scripts.demo import ROOT

pytestmark = pytest.mark.e2e
MELTANO = str(Path(sys.executable).parent / "meltano")


def meltano(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def linked(store_url: str) -> set[tuple[str, str, str]]:
    store = Store(store_url)
    try:
        with store.transaction() as connection:
            rows = connection.execute(
                sa.select(tables.pairs.c.marketo_id, tables.pairs.c.entity, tables.pairs.c.dynamics_id)
            ).all()
    finally:
        store.close()
    return {(str(m), str(e), str(d)) for m, e, d in rows}


def test_a_lost_store_is_refused_with_the_recovery_line_and_the_recovery_works(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(persons=30, dynamics_only=5, overlap=0.7, seed=31)
    env = meltano_env(sandbox.info, tmp_path)
    store_file = tmp_path / "store.db"
    admin = SandboxAdmin(sandbox.info)
    try:
        first = meltano(env, "run", "sync")
        assert first.returncode == 0, first.stderr[-3000:]
        clean = linked(env["MKTDYN_STORE_URL"])
        assert len(clean) > 15

        for path in tmp_path.glob("store.db*"):
            path.unlink()
        admin.marketo.reset_stats()
        admin.dynamics.reset_stats()
        refused = meltano(env, "run", "sync")
        assert refused.returncode != 0
        line = next(text for text in refused.stderr.splitlines() if "never staged a full extraction" in text)
        assert "marketo_leads" in line
        assert "meltano state clear" in line
        assert admin.marketo.stats()["requests_by_kind"].get("write", 0) == 0
        assert admin.dynamics.stats()["requests_by_kind"].get("write", 0) == 0
        assert linked(env["MKTDYN_STORE_URL"]) == set()  # nothing merged either
        assert store_file.exists()

        # Follow the line: clear the job's state, run again.
        for state_id in meltano(env, "state", "list").stdout.split():
            cleared = meltano(env, "state", "clear", "--force", state_id)
            assert cleared.returncode == 0, cleared.stderr[-2000:]
        recovered = meltano(env, "run", "sync")
        assert recovered.returncode == 0, recovered.stderr[-3000:]
        assert linked(env["MKTDYN_STORE_URL"]) == clean
    finally:
        admin.close()
