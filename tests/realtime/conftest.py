"""Fixtures of the real-time tests: one small sandbox and one store per module, `mktdyn serve` per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions

from tests.realtime.harness import Realtime

#: A small world: the real-time tests create their own persons and leads; the seed only has to exist.
SEED: dict[str, Any] = {"persons": 12, "dynamics_only": 4, "overlap": 0.5, "seed": 19}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    instance = Sandbox(SandboxOptions(directory=tmp_path_factory.mktemp("realtime-sandbox"), limits=True, **SEED))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def realtime(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realtime]:
    world = Realtime(sandbox.info, tmp_path_factory.mktemp("realtime"))
    yield world
    world.close()
