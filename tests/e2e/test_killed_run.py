"""After a killed `meltano run`, the documented recovery starts the next run at once (issue 22, item 7).

Meltano records a run of the job as running and refuses the same job until that record's heartbeat is five
minutes old. A SIGKILL leaves the record behind; the store's own lock dies with the process. The README's
recovery (`meltano run --force sync`) runs at once, and is safe because the store's write lock, not Meltano's
record, orders the writes; this test kills the job mid-merge and starts the next one immediately.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox
from target_mktdyn_merge.store.database import Store

from scripts.demo import ROOT

pytestmark = pytest.mark.e2e
MELTANO = str(Path(sys.executable).parent / "meltano")


def meltano(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def merge_started(store_url: str) -> bool:
    store = Store(store_url)
    try:
        return any(run["mode"] == "merge" for run in store.runs(5))
    except Exception:  # the store is not created yet
        return False
    finally:
        store.close()


def test_a_killed_run_is_followed_at_once_by_the_documented_recovery(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(persons=30, dynamics_only=5, overlap=0.7, seed=37)
    env = meltano_env(sandbox.info, tmp_path)
    job = subprocess.Popen(
        [MELTANO, "run", "sync"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not merge_started(env["MKTDYN_STORE_URL"]):
            assert job.poll() is None, "the job ended before its merge started"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()

    refused = meltano(env, "run", "sync")  # what Meltano does without the documented option
    assert refused.returncode != 0
    assert "already running" in refused.stderr
    recovered = meltano(env, "run", "--force", "sync")
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    store = Store(env["MKTDYN_STORE_URL"])
    try:
        runs = store.runs(10)
    finally:
        store.close()
    merges = [run for run in runs if run["mode"] == "merge"]
    assert merges[0]["status"] == "succeeded"
    assert merges[-1]["status"] == "running"  # the killed one: it holds nothing
