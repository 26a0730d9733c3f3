"""Drive the real plugin CLIs the way the ``sync`` job does, carrying state between runs like Meltano."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktdyn_sandbox.plugin_config import dynamics_connection, marketo_connection, start_date, target_connections
from target_mktdyn_merge.activity import iter_activities
from target_mktdyn_merge.store import Store

BIN = Path(sys.executable).parent


def connection_config(info: dict[str, Any]) -> dict[str, Any]:
    """The target's two connections, from sandbox.json."""
    return target_connections(info)


@dataclass
class Pipeline:
    """The job ``tap-marketo-leads target-mktdyn-stage tap-dynamics-leads target-mktdyn-merge``."""

    info: dict[str, Any]
    workdir: Path
    target_config: dict[str, Any] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    store_url: str = ""  # empty: a SQLite file in the work directory

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        start = start_date()
        info = self.info
        self.store_url = self.store_url or f"sqlite:///{self.workdir / 'store.db'}"
        self.configs = {
            "tap-marketo-leads": {**marketo_connection(info), "start_date": start, "poll_interval_seconds": 0.1},
            "tap-dynamics-leads": {**dynamics_connection(info), "start_date": start},
        }
        target = {"store_url": self.store_url, **connection_config(info), **self.target_config}
        self.configs["target-stage"] = {**target, "merge": False}
        self.configs["target-merge"] = {**target, "merge": True}

    def _write(self, name: str, payload: dict[str, Any]) -> Path:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(payload))
        return path

    def extract(self, tap: str) -> Path:
        """Run a tap with its saved state; return the file of its Singer output."""
        args = [str(BIN / tap), "--config", str(self._write(tap, self.configs[tap]))]
        if tap in self.states:
            args += ["--state", str(self._write(f"{tap}-state", json.loads(self.states[tap])))]
        output = self.workdir / f"{tap}.singer"
        with output.open("w") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
        assert result.returncode == 0, f"{tap} failed:\n{result.stderr[-3000:]}"
        return output

    def load(
        self,
        target: str,
        singer: Path,
        tap: str,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Feed a tap's output to a target leg; keep the last STATE it prints, as Meltano does."""
        args = [str(BIN / "target-mktdyn-merge"), "--config", str(self._write(target, self.configs[target]))]
        with singer.open() as source:
            result = subprocess.run(
                args, stdin=source, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
            )
        states = [line for line in result.stdout.splitlines() if line.strip()]
        for line in states:
            json.loads(line)  # stdout must hold nothing but state (DESIGN §8)
        if states:
            self.states[tap] = states[-1]
        return result

    def sync(
        self, before_merge: Callable[[], None] | None = None, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """One run of the job; returns the merging leg's result (its report is on stderr).

        ``before_merge`` runs after both extractions, before the merging leg: edits made there happen
        between extraction and write-back, as a user's edits can in production.
        """
        staged = self.load("target-stage", self.extract("tap-marketo-leads"), "tap-marketo-leads")
        assert staged.returncode == 0, staged.stderr[-3000:]
        dynamics = self.extract("tap-dynamics-leads")
        if before_merge is not None:
            before_merge()
        merged = self.load("target-merge", dynamics, "tap-dynamics-leads", env=env)
        if check:
            assert merged.returncode == 0, merged.stderr[-3000:]
        return merged

    def store(self) -> Store:
        """The target's store (close it after use)."""
        return Store(self.store_url)

    def activities(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The activity log of a run (default: the last merge)."""
        store = self.store()
        try:
            run = run_id or store.last_run("dry_run") or store.last_run("merge")
            return list(iter_activities(store, run))
        finally:
            store.close()
