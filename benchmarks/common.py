"""What the benchmark scripts share: seeded sandboxes, timed and memory-sampled processes, the SDK floors.

Every figure the benchmarks print comes from one of three places: wall time around a subprocess, the peak
resident memory of each process of its tree (sampled with psutil, by command name, since Meltano spawns the
plugins), and the sandbox's own request counters (``GET /_sandbox/stats``), so API calls are counted by the
server that answered them, not by the code being measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from mktdyn_sandbox.plugin_config import (
    dynamics_connection,
    marketo_connection,
    meltano_env,
    start_date,
    target_connections,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METRIC = re.compile(r'"metric":\s*"record_count",\s*"value":\s*(\d+).*?"stream":\s*"(\w+)"')
RELAYED_FROM_TARGET = re.compile(r"\] target-\S+ METRIC:")
KINDS = ("read", "write", "auth", "metadata")
__all__ = ["meltano_env"]  # re-exported for run_all.py


# -- sandboxes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedSpec:
    """The ``serve`` flags that decide a sandbox's data."""

    persons: int
    dynamics_only: int
    overlap: float = 0.6
    seed: int = 1

    @property
    def label(self) -> str:
        return f"p{self.persons}-d{self.dynamics_only}-o{self.overlap}-s{self.seed}"


def seed_directory(spec: SeedSpec, cache: Path) -> Path:
    """A directory seeded with ``spec`` (seeded once under ``cache``, reused by later runs of the benchmark)."""
    from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions

    directory = cache / spec.label
    if (directory / ".seeded").exists():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    sandbox = Sandbox(
        SandboxOptions(
            directory=directory,
            persons=spec.persons,
            dynamics_only=spec.dynamics_only,
            overlap=spec.overlap,
            seed=spec.seed,
        )
    )
    sandbox.start()
    sandbox.stop()
    (directory / ".seeded").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    log(f"seeded {spec.label} in {time.perf_counter() - started:.1f} s")
    return directory


def copy_seeded(seeded: Path, destination: Path) -> Path:
    """A private copy of a seeded directory (the sandbox does not reseed a seeded directory)."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(seeded, destination)
    return destination


class SandboxServer:
    """``mktdyn-sandbox serve`` as a subprocess, with its admin client; a context manager."""

    def __init__(
        self,
        directory: Path,
        spec: SeedSpec,
        *,
        limits: bool = True,
        export_delay: float = 1.0,
    ) -> None:
        self.directory = directory
        self.command = [
            str(BIN / "mktdyn-sandbox"),
            "serve",
            "--dir",
            str(directory),
            "--persons",
            str(spec.persons),
            "--dynamics-only",
            str(spec.dynamics_only),
            "--overlap",
            str(spec.overlap),
            "--seed",
            str(spec.seed),
            "--export-delay",
            str(export_delay),
            *([] if limits else ["--no-limits"]),
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """The running emulator's process id (its CPU time is measured next to ours)."""
        if self.process is None:
            raise RuntimeError("the sandbox is not running")
        return self.process.pid

    def __enter__(self) -> SandboxServer:
        from mktdyn_sandbox.admin_client import SandboxAdmin

        (self.directory / "sandbox.json").unlink(missing_ok=True)
        self.process = subprocess.Popen(self.command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 900
        while not (self.directory / "sandbox.json").exists():
            if self.process.poll() is not None:
                raise SystemExit(f"the sandbox exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start within 900 s")
            time.sleep(0.2)
        self.info = json.loads((self.directory / "sandbox.json").read_text())
        self.admin = SandboxAdmin(self.info)
        return self

    def __exit__(self, *exc: object) -> None:
        self.admin.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)

    def reset_stats(self) -> None:
        self.admin.marketo.reset_stats()
        self.admin.dynamics.reset_stats()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {"marketo": self.admin.marketo.stats(), "dynamics": self.admin.dynamics.stats()}


def marketo_tap_config(info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """tap-marketo-leads' settings for a benchmark sandbox."""
    return {**marketo_connection(info), "start_date": start_date(120), "poll_interval_seconds": 0.2, **extra}


def dynamics_tap_config(info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """tap-dynamics-leads' settings for a benchmark sandbox."""
    return {**dynamics_connection(info), "start_date": start_date(120), **extra}


def target_config(info: dict[str, Any], store_url: str, **extra: Any) -> dict[str, Any]:
    """target-mktdyn-merge's settings: both connections under their ``marketo_`` / ``dynamics_`` prefixes."""
    return {"store_url": store_url, **target_connections(info), **extra}


# -- measured processes -----------------------------------------------------------------------------------
class RssSampler:
    """Polls a process tree: the peak resident memory per process and the CPU seconds it used, by command name.

    CPU is each process's last ``cpu_times`` seen (a process's last 0.1 s escape it): on two cores shared with
    the sandbox, it tells our processes' work from the wall time the emulator's work takes.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._names: dict[int, str] = {}
        self._cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def name_of(process: psutil.Process) -> str:
        """The plugin's name for a plugin, else the executable's (``python`` scripts by their script)."""
        command = process.cmdline()
        for part in command[:3]:
            base = Path(part).name
            if base.startswith(("tap-", "target-", "meltano", "mktdyn")) or base.endswith(".py"):
                return base
        return Path(command[0]).name if command else process.name()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for process in tree:
                try:
                    name = self._names.get(process.pid) or self._names.setdefault(process.pid, self.name_of(process))
                    rss, cpu = process.memory_info().rss / 2**20, process.cpu_times()
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss)
                self._cpu[process.pid] = (name, cpu.user + cpu.system)
            self._stop.wait(self.interval)

    @property
    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per command name, summed over its processes."""
        totals: dict[str, float] = {}
        for name, seconds in self._cpu.values():
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """One finished process tree: wall seconds, peak RSS by command name, its stderr."""

    seconds: float
    peak_rss_mib: dict[str, float]
    stderr: str
    returncode: int
    #: CPU seconds per command name (and ``sandbox`` where the caller adds the emulator's).
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def record_counts(self) -> dict[str, int]:
        """The taps' ``record_count`` metrics summed per stream.

        Targets log the same metric for what they received; Meltano prefixes each relayed line with the
        plugin's name, and the targets' lines are left out so a record is counted once.
        """
        counts: dict[str, int] = {}
        for line in self.stderr.splitlines():
            if RELAYED_FROM_TARGET.search(line):
                continue
            for value, stream in METRIC.findall(line):
                counts[stream] = counts.get(stream, 0) + int(value)
        return counts


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: IO[Any] | None = None,
    stdout: IO[Any] | None = None,
    timeout: float = 7200,
    check: bool = True,
) -> Measured:
    """Run ``command`` with its stdout to ``stdout`` (default /dev/null); time it and sample its tree's RSS."""
    with open(os.devnull, "w") as devnull, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=stdin, stdout=stdout or devnull, stderr=errors
        )
        with RssSampler(process.pid) as sampler:
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        seconds = time.perf_counter() - started
        errors.seek(0)
        text = errors.read().decode("utf-8", "replace")
    if check and returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed with exit code {returncode}:\n{text[-4000:]}")
    return Measured(seconds, dict(sampler.peaks), text, returncode, sampler.cpu_seconds)


# -- API calls --------------------------------------------------------------------------------------------
@dataclass
class ApiCalls:
    """What the sandbox counted for one scenario, per system."""

    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    by_endpoint: dict[str, dict[str, int]] = field(default_factory=dict)
    written: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: dict[str, dict[str, Any]]) -> ApiCalls:
        calls = cls()
        for system, snapshot in stats.items():
            calls.by_kind[system] = {k: int(v) for k, v in snapshot.get("requests_by_kind", {}).items()}
            calls.by_endpoint[system] = {k: int(v) for k, v in snapshot.get("requests", {}).items()}
            calls.written[system] = {k: int(v) for k, v in snapshot.get("records_written", {}).items()}
            calls.rejected[system] = {k: int(v) for k, v in snapshot.get("rejected", {}).items()}
        return calls

    def kind(self, system: str, kind: str) -> int:
        return self.by_kind.get(system, {}).get(kind, 0)

    def endpoint_calls(self, system: str, words: Iterable[str]) -> int:
        """Calls to the endpoints whose name contains every one of ``words``."""
        wanted = [w.lower() for w in words]
        return sum(n for name, n in self.by_endpoint.get(system, {}).items() if all(w in name.lower() for w in wanted))


# -- the SDK floors (the plugins themselves live in floors.py, which imports only the SDK) ----------------
MELTANO_FLOOR_PROJECT = """\
default_environment: floor
project_id: mktdyn-bench-meltano-floor
send_anonymous_usage_stats: false
plugins:
  extractors:
  - {{name: tap-floor-a, namespace: tap_floor_a, executable: {tap}, capabilities: [catalog, discover, state]}}
  - {{name: tap-floor-b, namespace: tap_floor_b, executable: {tap}, capabilities: [catalog, discover, state]}}
  loaders:
  - {{name: target-floor-a, namespace: target_floor_a, executable: {target}}}
  - {{name: target-floor-b, namespace: target_floor_b, executable: {target}}}
environments:
- name: floor
jobs:
- name: sync
  tasks:
  - tap-floor-a target-floor-a tap-floor-b target-floor-b
"""


def meltano_floor(work: Path, runs: int = 3) -> Measured:
    """``meltano run`` of a job shaped like ``sync`` (two taps discovered and run, two targets) with trivial
    singer-sdk plugins that have nothing to do: what Meltano and six plugin start-ups cost before any work,
    the floor of a quiet run. The fastest of ``runs`` after a first run that creates Meltano's system database."""
    project = work / "meltano-floor"
    project.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for kind in ("tap", "target"):
        script = project / f"{kind}-floor"
        flag = "--floor-cli-tap" if kind == "tap" else "--floor-target"
        floors = Path(__file__).resolve().with_name("floors.py")
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{floors}" {flag} "$@"\n')
        script.chmod(0o755)
        scripts[kind] = script
    (project / "meltano.yml").write_text(MELTANO_FLOOR_PROJECT.format(**scripts))
    command = [str(BIN / "meltano"), "run", "sync"]
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    run_measured(command, env=env, cwd=project)
    return min((run_measured(command, env=env, cwd=project) for _ in range(runs)), key=lambda m: m.seconds)


@dataclass(frozen=True)
class TapRun:
    """A tap run alone, what it cost the sandbox, and the SDK floor emitting the same records."""

    tap: Measured
    calls: ApiCalls
    output: Path
    floor: Measured

    @property
    def records(self) -> int:
        """Records the tap emitted (its own record_count metrics)."""
        return sum(self.tap.record_counts().values())


def measure_tap_alone(sandbox: SandboxServer, tap: str, config: dict[str, Any], work: Path) -> TapRun:
    """Run ``tap`` against the sandbox (counting its API calls), then the trivial SDK tap emitting the same
    number of records of the same shape, the framework's floor (issue 9, scenario 5)."""
    config_file = write_json(work / f"{tap}.json", config)
    output = work / f"{tap}.singer"
    sandbox.reset_stats()
    with output.open("w") as stdout:
        measured = run_measured([str(BIN / tap), "--config", str(config_file)], stdout=stdout)
    calls = ApiCalls.from_stats(sandbox.stats())
    with output.open() as lines:
        template = write_json(work / f"{tap}.template.json", singer_template(lines))
    floor = run_measured(floor_command("tap", str(template), json.dumps(measured.record_counts())))
    return TapRun(measured, calls, output, floor)


def singer_template(singer_lines: Iterable[str], samples: int = 500) -> dict[str, Any]:
    """Schemas and a few records per stream of a tap's output, as the floor tap's template."""
    template: dict[str, Any] = {}
    for line in singer_lines:
        message = json.loads(line)
        if message["type"] == "SCHEMA":
            template[message["stream"]] = {
                "schema": message["schema"],
                "key": message["key_properties"][0],
                "replication_key": (message.get("bookmark_properties") or [None])[0],
                "records": [],
            }
        elif message["type"] == "RECORD" and len(template[message["stream"]]["records"]) < samples:
            template[message["stream"]]["records"].append(message["record"])
    return template


def floor_command(kind: str, *args: str) -> list[str]:
    """The command line that runs a floor (``tap`` or ``target``) in a fresh interpreter."""
    return [sys.executable, str(Path(__file__).resolve().with_name("floors.py")), f"--floor-{kind}", *args]


def log(text: str) -> None:
    """Progress on stderr (stdout carries the results)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path
