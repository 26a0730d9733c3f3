"""Drive the tap through its console script, as Meltano does, and read its Singer output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TAP = str(Path(sys.executable).with_name("tap-marketo-leads"))


def tap_config(info: dict[str, Any], days: int = 70, **overrides: Any) -> dict[str, Any]:
    """A tap config for a sandbox: the /rest URL form, its CA, fast polling, a start covering the seed."""
    start = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config: dict[str, Any] = {
        "base_url": f"{info['marketo_url']}/rest",
        "client_id": info["marketo_client_id"],
        "client_secret": info["marketo_client_secret"],
        "ca_bundle": info["ca_bundle"],
        "start_date": start,
        "poll_interval_seconds": 0.05,
        "window_days": 30,
    }
    config.update(overrides)
    return config


@dataclass
class TapRun:
    returncode: int
    records: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    schemas: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def state(self) -> dict[str, Any]:
        return self.states[-1]

    def by_id(self) -> dict[int, dict[str, Any]]:
        return {record["id"]: record for record in self.records}


def parse_output(stdout: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    records, states, schemas = [], [], []
    for line in stdout.splitlines():
        message = json.loads(line)  # every stdout line must be a Singer message
        if message["type"] == "RECORD":
            records.append(message["record"])
        elif message["type"] == "STATE":
            states.append(message["value"])
        elif message["type"] == "SCHEMA":
            schemas.append(message["schema"])
    return records, states, schemas


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def tap_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_tap(
    workdir: Path,
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 90,
) -> TapRun:
    """Run ``tap-marketo-leads`` once and collect its messages."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [TAP, "--config", str(write_json(workdir / "config.json", config))]
    if state is not None:
        command += ["--state", str(write_json(workdir / "state.json", state))]
    if catalog is not None:
        command += ["--catalog", str(write_json(workdir / "catalog.json", catalog))]
    command += list(args)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env or tap_env(), check=False
    )
    if args:  # --discover and friends print a catalog, not messages
        run = TapRun(completed.returncode, stderr=completed.stderr)
        run.schemas = [json.loads(completed.stdout)] if completed.returncode == 0 else []
        return run
    records, states, schemas = parse_output(completed.stdout) if completed.returncode == 0 else ([], [], [])
    return TapRun(completed.returncode, records, states, schemas, completed.stderr)
