"""Two overlapping runs on one store never revert an edit (issue 22, item 1; docs/architecture.md §10).

Real concurrency, through the plugin CLIs as Meltano pipes them: run B's Marketo leg (``tap-marketo-leads |
target-mktdyn-merge``, two processes) starts while run A is mid-run, and its bulk export captures the persons
(the sandbox writes an export file when it starts processing) *before* run A writes back. Users edit both
sides: a Dynamics user changes a lead's job title (run A carries it to Marketo), a Marketo user changes the
person's city after run A's Marketo leg (run B's export carries it, together with the person's old title).
Without the fix run B took the old title for a Marketo edit and wrote it over the Dynamics user's edit. Now
the write run A confirmed makes run B re-read the person before merging: both edits end on both sides.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store_backends import BACKENDS, fresh_store_url
from tests.target.pipeline import BIN
from tests.target.worlds import World

DYNAMICS_TITLE = "Edited in Dynamics during run A"
MARKETO_CITY = "Edited in Marketo between the runs"


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with fresh_store_url(request.param, tmp_path) as url:
        synced = World(tmp_path, {}, store_url=url, persons=20, dynamics_only=2, export_delay=1.5)
        try:
            synced.sync()
            yield synced
        finally:
            synced.close()


def start_marketo_leg(world: World) -> tuple[subprocess.Popen[bytes], subprocess.Popen[str]]:
    """Run B's first leg as Meltano runs it: the tap piped into the staging target, both started now."""
    pipeline = world.pipeline
    tap_args = [
        str(BIN / "tap-marketo-leads"),
        "--config",
        str(pipeline._write("b-tap", pipeline.configs["tap-marketo-leads"])),
    ]
    tap_args += ["--state", str(pipeline._write("b-state", json.loads(pipeline.states["tap-marketo-leads"])))]
    target_args = [
        str(BIN / "target-mktdyn-merge"),
        "--config",
        str(pipeline._write("b-stage", pipeline.configs["target-stage"])),
    ]
    tap = subprocess.Popen(tap_args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    target = subprocess.Popen(target_args, stdin=tap.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert tap.stdout is not None
    tap.stdout.close()  # the target holds the pipe
    return tap, target


def test_an_overlapping_run_does_not_revert_either_users_edit(world: World) -> None:
    pair = world.in_sync("lead")[0]
    person_id, lead_id = pair["marketo_id"], pair["dynamics_id"]
    old_title = world.person(person_id)["title"]
    assert old_title != DYNAMICS_TITLE
    exports = world.sandbox.directory / "exports"
    before = set(exports.glob("*.csv"))

    # Run A: the Dynamics user's edit is extracted; run A's Marketo leg has run.
    world.admin.dynamics.edit("lead", lead_id, {"jobtitle": DYNAMICS_TITLE})
    time.sleep(1.1)
    pipeline = world.pipeline
    staged = pipeline.load("target-stage", pipeline.extract("tap-marketo-leads"), "tap-marketo-leads")
    assert staged.returncode == 0, staged.stderr[-3000:]
    dynamics_a = pipeline.extract("tap-dynamics-leads")
    before |= set(exports.glob("*.csv"))

    # The Marketo user edits the person; run B starts, and its export captures the person (old title).
    world.admin.marketo.edit("person", person_id, {"city": MARKETO_CITY})
    time.sleep(1.1)
    tap_b, target_b = start_marketo_leg(world)
    deadline = time.monotonic() + 120
    while not set(exports.glob("*.csv")) - before:  # the sandbox writes the file when processing starts
        assert tap_b.poll() is None or tap_b.returncode == 0
        assert time.monotonic() < deadline, "run B's export never started"
        time.sleep(0.05)

    # Run A merges and writes back while run B's leg is still running.
    merged_a = pipeline.load("target-merge", dynamics_a, "tap-dynamics-leads")
    assert merged_a.returncode == 0, merged_a.stderr[-3000:]
    assert world.person(person_id)["title"] == DYNAMICS_TITLE
    # Run B's leg may have staged by now or may still be running: either way its export was captured before
    # run A wrote, and its staging run started before (the loop above), which is the overlap that matters.

    out, err = target_b.communicate(timeout=300)
    assert tap_b.wait(timeout=60) == 0
    assert target_b.returncode == 0, err[-3000:]
    assert "staged" in err
    states = [line for line in out.splitlines() if line.strip()]
    if states:
        pipeline.states["tap-marketo-leads"] = states[-1]

    # Run B's merging leg.
    merged_b = pipeline.load("target-merge", pipeline.extract("tap-dynamics-leads"), "tap-dynamics-leads")
    assert merged_b.returncode == 0, merged_b.stderr[-3000:]

    lead = world.row("lead", lead_id)
    person = world.person(person_id)
    assert lead["jobtitle"] == DYNAMICS_TITLE  # the Dynamics user's edit was not reverted
    assert person["title"] == DYNAMICS_TITLE
    assert person["city"] == MARKETO_CITY  # the Marketo user's edit arrived
    assert lead["address1_city"] == MARKETO_CITY
    assert "re-read 1 marketo_leads record(s)" in merged_b.stderr
