"""Configs for the sandbox and a runner that drives the tap's CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TAP = str(Path(sys.executable).with_name("tap-dynamics-leads"))


def tap_config(info: dict[str, Any], flow: str = "client_credentials", **overrides: Any) -> dict[str, Any]:
    """The tap's settings for a sandbox described by ``info`` (sandbox.json)."""
    config: dict[str, Any] = {
        "base_url": info["dynamics_url"],
        "authority_host": info["dynamics_authority"],
        "tenant_id": info["dynamics_tenant_id"],
        "client_id": info["dynamics_client_id"],
        "ca_bundle": info["ca_bundle"],
        "auth_flow": flow,
        "page_size": 50,
    }
    if flow == "password":
        config.update(username=info["dynamics_username"], password=info["dynamics_password"])
    else:
        config["client_secret"] = info["dynamics_client_secret"]
    config.update(overrides)
    return config


@dataclass
class TapRun:
    returncode: int
    stderr: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def ids(self, stream: str, key: str) -> set[str]:
        return {record[key] for record in self.records.get(stream, [])}


def run_tap(
    tmp: Path,
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    discover: bool = False,
    timeout: float = 120,
) -> TapRun:
    """Run ``tap-dynamics-leads`` and parse its Singer output (or catalog, with ``discover``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    config_path = tmp / "config.json"
    config_path.write_text(json.dumps(config))
    command = [TAP, "--config", str(config_path)]
    if discover:
        command.append("--discover")
    if state is not None:
        (tmp / "state.json").write_text(json.dumps(state))
        command += ["--state", str(tmp / "state.json")]
    if catalog is not None:
        (tmp / "catalog.json").write_text(json.dumps(catalog))
        command += ["--catalog", str(tmp / "catalog.json")]
    process = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )
    run = TapRun(process.returncode, process.stderr)
    if discover:
        run.schemas = json.loads(process.stdout) if process.returncode == 0 else {}
        return run
    for line in process.stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            run.records.setdefault(message["stream"], []).append(message["record"])
        elif message["type"] == "SCHEMA":
            run.schemas[message["stream"]] = message["schema"]
        elif message["type"] == "STATE":
            run.state = message["value"]
    return run
