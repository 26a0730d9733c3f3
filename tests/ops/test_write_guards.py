"""A safe first sync (issue 20): link-only, the create caps per system and the change-ratio breaker.

One world (60 persons, real sandbox, real plugin CLIs) goes through the README's playbook: a link-only run
links and creates nothing; a run with creates on but past ``max_creates_in_marketo`` writes nothing to either
system, says why in one line and in the report; the same run allowed (``allow_mass_change``) completes. Then
most linked pairs are edited at once: past ``max_change_share`` nothing is written, and allowed, it lands.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from target_mktdyn_merge.store import schema as tables

from tests.ops.sandboxes import small_sandbox
from tests.target.pipeline import Pipeline

MKTDYN = str(Path(sys.executable).parent / "mktdyn")
GUARDS = {"max_creates_in_marketo": 2, "max_creates_in_dynamics": 2, "max_change_share": 0.3}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("guards")
    with small_sandbox(root / "sandbox", persons=60, dynamics_only=6, overlap=0.8, seed=5) as (info, admin):
        yield {"admin": admin, "pipeline": Pipeline(info, root / "work", dict(GUARDS))}


def writes(admin: SandboxAdmin) -> dict[str, dict[str, int]]:
    """Records written through each API since the last reset."""
    return {
        "marketo": dict(admin.marketo.stats()["records_written"]),
        "dynamics": dict(admin.dynamics.stats()["records_written"]),
    }


def run(
    world: dict[str, Any], *, replay: bool = False, **settings: Any
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, int]]]:
    """One job run with these settings on top of the guards; what it wrote to both systems.

    ``replay``: only the merging leg, fed the last Dynamics extraction again: a run in which nothing new was
    extracted (staging a record again changes nothing), as the next scheduled run after a stop would be.
    """
    pipeline, admin = world["pipeline"], world["admin"]
    pipeline.configs["target-merge"] = {**pipeline.configs["target-merge"], **GUARDS, "link_only": False,
                                        "allow_mass_change": False, **settings}  # fmt: skip
    admin.marketo.reset_stats()
    admin.dynamics.reset_stats()
    if replay:
        result = pipeline.load("target-merge", pipeline.workdir / "tap-dynamics-leads.singer", "tap-dynamics-leads")
    else:
        result = pipeline.sync(check=False)
    return result, writes(admin)


def report(world: dict[str, Any]) -> str:
    command = [MKTDYN, "--store-url", world["pipeline"].store_url, "report"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def pairs(world: dict[str, Any]) -> list[dict[str, Any]]:
    store = world["pipeline"].store()
    with store.transaction() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(tables.pairs)).all()]
    store.close()
    return rows


def test_a_first_sync_by_the_playbook(world: dict[str, Any]) -> None:
    # Link only: pairs are matched and linked, nothing is created in either system.
    linked, written = run(world, link_only=True)
    assert linked.returncode == 0, linked.stderr[-2000:]
    assert pairs(world)
    assert written["marketo"].get("created", 0) == 0
    assert written["dynamics"].get("created", 0) == 0
    # Creates on, past the cap: nothing at all is written, one line says why, and so does the report.
    stopped, written = run(world, replay=True)
    assert stopped.returncode != 0
    reason = stopped.stderr.strip().splitlines()[-1]
    assert reason.startswith("target-mktdyn-merge: write phase stopped: ")
    assert "creates in marketo exceed max_creates_in_marketo=2" in reason
    assert "allow_mass_change" in reason
    assert sum(written["marketo"].values()) == 0
    assert sum(written["dynamics"].values()) == 0
    shown = report(world)
    assert "status=failed" in shown
    assert "STOPPED: write phase stopped: " in shown
    # The next run, allowed, completes: the owed creates land.
    allowed, written = run(world, replay=True, allow_mass_change=True)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert written["marketo"].get("created", 0) > 2


def test_most_pairs_changing_at_once_stops_until_allowed(world: dict[str, Any]) -> None:
    admin = world["admin"]
    leads = [p for p in pairs(world) if p["entity"] == "lead"][:25]
    assert len(leads) == 25
    for number, pair in enumerate(leads):
        admin.marketo.edit("person", pair["marketo_id"], {"title": f"Bulk-edited title {number}"})
    stopped, written = run(world)
    assert stopped.returncode != 0
    reason = stopped.stderr.strip().splitlines()[-1]
    assert "linked pairs" in reason
    assert "more than max_change_share=0.3" in reason
    assert sum(written["dynamics"].values()) == 0
    assert sum(written["marketo"].values()) == 0
    assert admin.dynamics.record("lead", leads[0]["dynamics_id"])["jobtitle"] != "Bulk-edited title 0"
    allowed, written = run(world, replay=True, allow_mass_change=True)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert admin.dynamics.record("lead", leads[0]["dynamics_id"])["jobtitle"] == "Bulk-edited title 0"
    assert written["dynamics"].get("updated", 0) >= 25
