"""What the fault and crash matrices share: the world they run in, the fault-free reference, the verdict.

A matrix case runs a twin of the reference world (same seed, same settings) through trouble (injected API
faults, a SIGKILL, a sandbox restart), then fault-free runs until a run writes nothing, and must end exactly
where the undisturbed reference ends: :func:`assert_same_end_state`, which also runs ``mktdyn verify`` and
demands zero unexplained drift.

``MKTDYN_FULL_MATRIX=1`` widens both matrices (every crash point and batch, more seeds); CI runs the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.target.worlds import (
    World,
    accounting_problems,
    confirmed_creates,
    drift_problems,
    end_state_differences,
    snapshot,
)

FULL = os.environ.get("MKTDYN_FULL_MATRIX", "") not in ("", "0")
#: Marks a case that runs only with MKTDYN_FULL_MATRIX=1 (CI's budget keeps one case of each kind of trouble).
FULL_ONLY = pytest.mark.skipif(not FULL, reason="part of the full matrix: MKTDYN_FULL_MATRIX=1")
#: Small enough to keep a run at a few seconds, big enough for creates both ways, updates, collisions,
#: ambiguous emails and several `$batch` requests per run (batches of 4).
WORLD: dict[str, Any] = {"persons": 40, "dynamics_only": 4}
TARGET: dict[str, Any] = {"dynamics_batch_size": 4}


def twin(root: Path, seed: int = 21, faults: str = "") -> World:
    """A world like the reference (same seed and settings), optionally with faults from its start.

    Every person's title is edited before the first run, so that run writes to both systems in bulk (Marketo
    wins on leads, Dynamics on contacts): faults and crashes land among many writes, not a handful.
    """
    world = World(root, dict(TARGET), seed=seed, faults=faults, **WORLD)
    for person_id in range(1, WORLD["persons"] + 1):
        world.admin.marketo.edit("person", person_id, {"title": f"Title {person_id}"})
    return world


@dataclass
class Reference:
    """The undisturbed world's settled end state, and what it took to get there."""

    snapshot: dict[str, Any]
    creates: dict[str, int]


def reference_run(root: Path, seed: int = 21, edits: Callable[[World], None] | None = None) -> Reference:
    """Run the job fault-free on ``seed`` (with ``edits`` after the first run) until it writes nothing."""
    world = twin(root, seed)
    try:
        world.sync()
        if edits is not None:
            edits(world)
        world.settle()
        problems = accounting_problems(world)
        assert problems == [], f"the fault-free reference itself does not account for its writes: {problems}"
        drift = drift_problems(world)
        assert drift == [], f"the fault-free reference itself drifts: {drift[:10]}"
        return Reference(snapshot(world), dict(confirmed_creates(world)))
    finally:
        world.close()


def assert_same_end_state(reference: Reference, world: World) -> None:
    """Settle ``world`` fault-free, then demand the reference's end state and complete books."""
    world.faults("")
    world.settle()
    problems = end_state_differences(reference.snapshot, world)
    problems += accounting_problems(world)
    problems += drift_problems(world)  # and `mktdyn verify` finds nothing the store cannot explain
    if dict(confirmed_creates(world)) != reference.creates:
        problems.append(f"confirmed creates {dict(confirmed_creates(world))}, reference {reference.creates}")
    assert problems == [], "\n".join(problems[:20])
