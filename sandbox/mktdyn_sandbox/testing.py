"""Helpers for test modules that need the shared sandbox at import time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SESSION_ENV = "MKTDYN_TEST_SANDBOX_JSON"
#: The shared test sandbox's seed: small, so every suite stays fast.
SESSION_SEED: dict[str, Any] = {"persons": 200, "dynamics_only": 40, "overlap": 0.6, "seed": 7}


def session_info() -> dict[str, Any]:
    """The shared sandbox's sandbox.json, readable while pytest collects (the plugin started it)."""
    path = os.environ.get(SESSION_ENV)
    if not path:
        raise RuntimeError(f"{SESSION_ENV} is not set: run under pytest with -p mktdyn_sandbox.pytest_plugin")
    info: dict[str, Any] = json.loads(Path(path).read_text())
    return info
