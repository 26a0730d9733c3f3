"""Fixtures of the real-time tests: one small sandbox, one store and one `mktdyn serve` per test process.

Starting `mktdyn serve` costs about 2 s (imports), so the tests share one process and one store,
each with its own persons (unique emails); tests that need another configuration or kill the process start
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions

from tests.realtime.harness import Realtime, Serve

#: A small world: the real-time tests create their own persons and leads; the seed only has to exist.
SEED: dict[str, Any] = {"persons": 12, "dynamics_only": 4, "overlap": 0.5, "seed": 19}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with the real APIs' rate limits on."""
    instance = Sandbox(SandboxOptions(directory=tmp_path_factory.mktemp("realtime-sandbox"), limits=True, **SEED))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def realtime(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realtime]:
    world = Realtime(sandbox.info, tmp_path_factory.mktemp("realtime"))
    yield world
    world.close()


@pytest.fixture(scope="session")
def served(realtime: Realtime) -> Serve:
    """The module's `mktdyn serve`, with the webhook defined in the sandbox."""
    serve = realtime.serve()
    realtime.define_webhook(serve)
    return serve
