"""pytest plugin: a sandbox running in-process before collection, plus a factory for fresh ones.

The SDK's ``get_tap_test_class`` discovers at import time, so the shared sandbox must be up before
pytest collects test modules; ``pytest_configure`` starts it and exports ``MKTDYN_TEST_SANDBOX_JSON``
for modules to read at import (see :func:`mktdyn_sandbox.testing.session_info`). The shared sandbox
runs without rate limits and with fast exports; tests that need limits, faults or an exact state start
their own with the ``make_sandbox`` fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from mktdyn_sandbox.testing import SESSION_ENV, SESSION_SEED

_session: Sandbox | None = None
_session_dir: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Start the shared sandbox (in each xdist worker, not in the controller)."""
    global _session, _session_dir
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    if getattr(config.option, "collectonly", False) and os.environ.get(SESSION_ENV):
        return
    _session_dir = Path(tempfile.mkdtemp(prefix="mktdyn-sandbox-"))
    _session = Sandbox(SandboxOptions(directory=_session_dir, limits=False, export_delay=0.05, **SESSION_SEED))
    _session.start()
    os.environ[SESSION_ENV] = str(_session_dir / "sandbox.json")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the shared sandbox and remove its directory."""
    global _session
    if _session is not None:
        _session.stop()
        _session = None
    if _session_dir is not None:
        shutil.rmtree(_session_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_info() -> dict[str, Any]:
    """The shared sandbox's sandbox.json content."""
    if _session is None:
        pytest.skip("the shared sandbox is not running in this process")
    return _session.info


@pytest.fixture(scope="session")
def sandbox_admin(sandbox_info: dict[str, Any]) -> Iterator[SandboxAdmin]:
    """Admin client of the shared sandbox."""
    admin = SandboxAdmin(sandbox_info)
    yield admin
    admin.close()


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Factory of fresh in-process sandboxes (small seed, limits off unless asked), stopped after the test."""
    started: list[Sandbox] = []

    def factory(**overrides: Any) -> Sandbox:
        options: dict[str, Any] = {"limits": False, "export_delay": 0.05, **SESSION_SEED}
        options.update(overrides)
        directory = options.pop("directory", tmp_path / f"sandbox-{len(started)}")
        sandbox = Sandbox(SandboxOptions(directory=Path(directory), **options))
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()
