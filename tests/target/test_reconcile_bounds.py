"""Key reconciliation is bounded and confirmed by a direct read (issue 22, item 2; docs/architecture.md §10).

A full extraction of Dynamics leads is produced by the real tap (no state: it reads everything and closes the
read with ACTIVATE_VERSION), then cut down as a security role that sees fewer rows would cut it, and fed to the
merging leg of the target CLI. Under the ``delete`` policies a wrong reconciliation would unlink pairs and
delete Marketo persons; the store decides what is missing, so both backends run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.store_backends import BACKENDS, fresh_store_url
from tests.target.worlds import World

POLICIES = {"delete_from_dynamics": "delete", "delete_from_marketo": "delete"}


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with fresh_store_url(request.param, tmp_path) as url:
        synced = World(tmp_path, POLICIES, store_url=url, persons=30, dynamics_only=4)
        try:
            synced.sync()
            FIRST_PAIRS[id(synced)] = synced.pairs()
            assert len(FIRST_PAIRS[id(synced)]) > 10
            yield synced
        finally:
            synced.close()


def full_dynamics_extraction(world: World, keep: Callable[[dict[str, Any]], bool]) -> Path:
    """The tap's full read of both Dynamics streams, keeping only the lead records ``keep`` accepts."""
    world.pipeline.states.pop("tap-dynamics-leads", None)
    full = world.pipeline.extract("tap-dynamics-leads")
    lines = []
    for text in full.read_text().splitlines():
        message = json.loads(text)
        if message.get("type") == "RECORD" and message["stream"] == "dynamics_leads" and not keep(message["record"]):
            continue
        lines.append(text)
    assert any('"ACTIVATE_VERSION"' in text and "dynamics_leads" in text for text in lines)
    cut = full.with_name("cut.singer")
    cut.write_text("\n".join(lines) + "\n")
    return cut


def counts(world: World) -> tuple[int, int, int]:
    """Linked pairs, and how many of the first run's linked persons and rows both systems still hold."""
    pairs = world.pairs()
    persons = sum(world.admin.marketo.record("person", p["marketo_id"]) is not None for p in FIRST_PAIRS[id(world)])
    rows = sum(world.admin.dynamics.record(p["entity"], p["dynamics_id"]) is not None for p in FIRST_PAIRS[id(world)])
    return persons, rows, len(pairs)


FIRST_PAIRS: dict[int, list[dict[str, Any]]] = {}


def test_a_full_extraction_with_no_leads_deletes_nothing_and_says_why(world: World) -> None:
    before = counts(world)
    world.reset_stats()
    result = world.pipeline.load("target-merge", full_dynamics_extraction(world, lambda _: False), "tap-dynamics-leads")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = result.stderr.strip().splitlines()[-1]
    assert reason.startswith("target-mktdyn-merge: key reconciliation stopped: the full extraction of dynamics_leads")
    assert "max_reconcile" in reason
    assert "nothing was marked deleted" in reason
    assert world.writes() == (0, 0)
    assert counts(world) == before
    store = world.pipeline.store()
    try:
        assert all(c["deleted"] == 0 for c in store.staged_counts().values())
        last = store.runs(1)[0]
    finally:
        store.close()
    assert last["status"] == "failed"
    assert "key reconciliation stopped" in last["error"]  # what `mktdyn report` shows


def test_records_a_full_extraction_missed_but_still_there_are_not_deleted(world: World) -> None:
    store = world.pipeline.store()
    try:
        staged = store.staged_records("dynamics_leads", [p["dynamics_id"] for p in world.pairs()])
    finally:
        store.close()
    hidden = set(sorted(staged)[:2])  # staged leads this extraction does not see, but they exist
    assert len(hidden) == 2
    before = counts(world)
    result = world.pipeline.load(
        "target-merge",
        full_dynamics_extraction(world, lambda record: record["leadid"] not in hidden),
        "tap-dynamics-leads",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 dynamics_leads record(s) absent from this full extraction still exist when read by id" in result.stderr
    assert "treated as deleted" not in result.stderr.replace("not treated as deleted", "")
    assert counts(world) == before
    assert {p["dynamics_id"] for p in world.pairs()} >= hidden
