"""The `sync` job through real Meltano against the sandbox: state kept by Meltano, incremental reruns, and a
report that matches what the sandbox received. Meltano's part is what is tested here; everything else is
tested through the plugins' CLIs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store

from scripts.demo import ROOT
from scripts.meltano_plugins import use_installed_plugins

pytestmark = pytest.mark.e2e
MELTANO = str(Path(sys.executable).parent / "meltano")


def meltano(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def activities_of_last_run(store_url: str) -> list[dict[str, Any]]:
    store = Store(store_url)
    try:
        run = store.last_run("merge")
        assert run is not None
        return list(iter_activities(store, run))
    finally:
        store.close()


def test_the_sync_job_keeps_state_runs_incrementally_and_reports_what_it_wrote(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(persons=60, dynamics_only=8, overlap=0.7, seed=13)
    env = meltano_env(sandbox.info, tmp_path)
    use_installed_plugins(Path(env["MELTANO_SYS_DIR_ROOT"]))
    admin = SandboxAdmin(sandbox.info)
    try:
        meltano(env, "run", "sync")
        state_ids = meltano(env, "state", "list").stdout.split()
        assert set(state_ids) == {
            "sandbox:tap-marketo-leads-to-target-mktdyn-stage",
            "sandbox:tap-dynamics-leads-to-target-mktdyn-merge",
        }
        marketo_state = json.loads(meltano(env, "state", "get", state_ids[0]).stdout)
        dynamics_state = json.loads(
            meltano(env, "state", "get", "sandbox:tap-dynamics-leads-to-target-mktdyn-merge").stdout
        )
        bookmarks = {**marketo_state["singer_state"]["bookmarks"], **dynamics_state["singer_state"]["bookmarks"]}
        assert bookmarks["marketo_leads"]["replication_key_value"]
        assert "delta_link" in bookmarks["dynamics_leads"]
        assert "delta_link" in bookmarks["dynamics_contacts"]
        first = activities_of_last_run(env["MKTDYN_STORE_URL"])
        assert sum(1 for a in first if a["action"] == "linked") > 20

        # One edit on each side, then the job again: only what changed is extracted and merged.
        person = next(a for a in first if a["action"] == "linked" and a["entity"] == "lead")
        admin.marketo.edit("person", person["person_id"], {"firstName": "Incremental"})
        contact = next(a for a in first if a["action"] == "linked" and a["entity"] == "contact")
        admin.dynamics.edit("contact", contact["dynamics_id"], {"jobtitle": "Changed in Dynamics"})
        time.sleep(1.1)  # export windows end on whole seconds
        admin.marketo.reset_stats()
        admin.dynamics.reset_stats()
        run = meltano(env, "run", "sync")
        second = activities_of_last_run(env["MKTDYN_STORE_URL"])
        assert "staged 1 dynamics_contacts record(s)" in run.stderr  # the delta, not every contact
        assert "staged 0 dynamics_leads" not in run.stderr
        touched = {a["person_id"] for a in second if a["action"] != "unchanged"}
        assert touched == {person["person_id"], contact["person_id"]}

        # The report's writes are exactly the records the sandbox received.
        writes = Counter((a["direction"], a["action"]) for a in second if a["action"] in ("updated", "created"))
        assert writes == {("to_dynamics", "updated"): 1, ("to_marketo", "updated"): 1}
        assert admin.dynamics.stats()["records_written"] == {"updated": 1}
        assert admin.marketo.stats()["records_written"] == {"updated": 1}
        assert admin.dynamics.record("lead", person["dynamics_id"])["firstname"] == "Incremental"  # type: ignore[index]
        assert admin.marketo.record("person", contact["person_id"])["title"] == "Changed in Dynamics"  # type: ignore[index]
        report = meltano(env, "invoke", "mktdyn", "report").stdout
        assert re.search(r"^updated\s+to_dynamics\s+1$", report, re.MULTILINE)
        assert re.search(r"^updated\s+to_marketo\s+1$", report, re.MULTILINE)

        # What the log says is what both systems hold: `mktdyn verify` reads both (exit 1 on drift).
        verified = meltano(env, "invoke", "mktdyn", "verify").stdout
        assert re.search(r"^verify: \d+ pair\(s\), .* 0 drift$", verified, re.MULTILINE), verified
    finally:
        admin.close()
