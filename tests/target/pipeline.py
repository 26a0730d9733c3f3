"""Drive the real plugin CLIs the way the ``sync`` job does, carrying state between runs like Meltano."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktdyn_sandbox.plugin_config import dynamics_connection, marketo_connection, start_date, target_connections
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store

BIN = Path(sys.executable).parent


@dataclass
class Step:
    """One process of a job run: which one, how it ended, what it said last."""

    name: str
    returncode: int
    stderr: str

    @property
    def reason(self) -> str:
        """The last line it printed on stderr (a failing plugin's one-line reason)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass
class JobResult:
    """How one run of the job ended: the steps that ran, in order; a failed step ends the job."""

    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every step succeeded (the job ran to its end)."""
        return all(step.returncode == 0 for step in self.steps) and len(self.steps) == 4

    @property
    def failed(self) -> Step | None:
        """The step that ended the job, if one did."""
        return next((step for step in self.steps if step.returncode != 0), None)


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
    #: Tap name → the catalog it runs with (``--catalog``), as ``meltano select`` would give it.
    catalogs: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if tap in self.catalogs:
            args += ["--catalog", str(self._write(f"{tap}-catalog", self.catalogs[tap]))]
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
            json.loads(line)  # stdout must hold nothing but state (docs/architecture.md §8)
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

    def extract_until(self, tap: str, kill_after_records: int | None = None) -> tuple[Path, Step]:
        """Run a tap like :meth:`extract`, but tolerate its failure; SIGKILL it after N records if asked.

        What the tap printed before it died is kept (Meltano pipes it to the target whatever happens); a last
        line cut in half by the kill is dropped, as a line-reading target never sees it whole. A killed tap's
        output ends at its n-th record (what it had flushed beyond that is dropped, as if still in its buffer),
        so the target sees exactly the same records however the pipe was timed.
        """
        args = [str(BIN / tap), "--config", str(self._write(tap, self.configs[tap]))]
        if tap in self.catalogs:
            args += ["--catalog", str(self._write(f"{tap}-catalog", self.catalogs[tap]))]
        if tap in self.states:
            args += ["--state", str(self._write(f"{tap}-state", json.loads(self.states[tap])))]
        output = self.workdir / f"{tap}.singer"
        records = 0
        with output.open("w") as out, tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
            assert process.stdout is not None
            for line in process.stdout:
                if not line.endswith("\n"):
                    break
                out.write(line)
                if kill_after_records is not None and json.loads(line).get("type") == "RECORD":
                    records += 1
                    if records == kill_after_records:
                        process.kill()
                        break
            returncode = process.wait(timeout=300)
            errors.seek(0)
            stderr = errors.read()
        return output, Step(tap, returncode, stderr)

    def run_job(
        self,
        before_merge: Callable[[], None] | None = None,
        *,
        stage_env: dict[str, str] | None = None,
        merge_env: dict[str, str] | None = None,
        kill_tap: tuple[str, int] | None = None,
        carry_on: bool = False,
    ) -> JobResult:
        """One run of the job as Meltano runs it, where any step may fail: the job stops at the first failure.

        Every STATE line a target printed is kept even when the job fails (Meltano stores state as it arrives),
        so a STATE that ran ahead of what the store committed would show as lost records in the next run.
        ``kill_tap`` is ``(tap, n)``: SIGKILL that tap after its n-th record. ``carry_on`` runs the merging
        block even when the staging block failed, as ``meltano run tap-dynamics-leads target-mktdyn-merge``
        run on its own would: the merge then sees only what the failed block staged.
        """
        result = JobResult()
        blocks = (("tap-marketo-leads", "target-stage", stage_env), ("tap-dynamics-leads", "target-merge", merge_env))
        for tap, target, env in blocks:
            kill = kill_tap[1] if kill_tap is not None and kill_tap[0] == tap else None
            singer, extracted = self.extract_until(tap, kill)
            if target == "target-merge" and extracted.returncode == 0 and before_merge is not None:
                before_merge()
            loaded = self.load(target, singer, tap, env=env)
            result.steps += [extracted, Step(target, loaded.returncode, loaded.stderr)]
            if result.failed is not None and not carry_on:
                return result
        return result

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``mktdyn verify`` through its CLI, with the merging target's config (JSON lines on stdout)."""
        command = [str(BIN / "mktdyn"), "--store-url", self.store_url, "verify"]
        command += ["--config", str(self._write("target-merge", self.configs["target-merge"])), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    def discover(self, tap: str) -> dict[str, Any]:
        """The tap's catalog (``--discover``), everything selected as the tap declares it."""
        args = [str(BIN / tap), "--config", str(self._write(tap, self.configs[tap])), "--discover"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
        catalog: dict[str, Any] = json.loads(result.stdout)
        return catalog

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
