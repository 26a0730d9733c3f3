"""A small sandbox for a module's world: limits off, quick exports, stopped (with its admin client) at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions


@contextmanager
def small_sandbox(directory: Path, **seed: Any) -> Iterator[tuple[dict[str, Any], SandboxAdmin]]:
    """A sandbox seeded with ``seed`` (persons, dynamics_only, overlap, seed): its sandbox.json and admin client."""
    sandbox = Sandbox(SandboxOptions(directory=directory, limits=False, export_delay=0.05, **seed))
    info = sandbox.start()
    admin = SandboxAdmin(info)
    try:
        yield info, admin
    finally:
        admin.close()
        sandbox.stop()
