"""Benchmark tap-marketo-leads: a full bulk extraction from a sandbox, next to the SDK's own floor.

Starts a sandbox without rate limits (``--persons``, default 100,000), runs the tap's CLI with stdout
to /dev/null, and prints persons/second, wall time and the API calls the run used (sandbox stats).
Then runs a trivial singer-sdk tap that emits the same number of records of the same shape (the
framework's floor: what any SDK tap costs per record before talking to an API).

    .venv/bin/python benchmarks/tap_marketo.py --persons 100000
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TAP = str(Path(sys.executable).with_name("tap-marketo-leads"))


# -- the floor: a trivial SDK tap emitting N copies of one record ---------------------------------
def run_floor(count: int, shape_file: Path) -> None:
    """Entry point of the floor subprocess (``--floor``)."""
    from singer_sdk import Stream, Tap

    shape = json.loads(shape_file.read_text())

    class FloorStream(Stream):
        name = "marketo_leads"
        primary_keys = ("id",)
        replication_key = "updatedAt"

        def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
            sample = shape["record"]
            for index in range(count):
                yield {**sample, "id": index + 1}

    class FloorTap(Tap):
        name = "tap-floor"
        config_jsonschema = {"type": "object", "properties": {}}

        def discover_streams(self) -> list[Stream]:
            return [FloorStream(self, schema=shape["schema"])]

    FloorTap(config={}).sync_all()


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    with open("/dev/null", "w") as devnull:
        completed = subprocess.run(command, stdout=devnull, stderr=subprocess.PIPE, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{completed.stderr[-3000:]}")
    return elapsed, completed.stderr


def _record_count(stderr: str) -> int:
    counts = [int(m) for m in re.findall(r'"metric":"record_count","value":(\d+)', stderr)]
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--export-delay", type=float, default=0.05, help="sandbox seconds per export phase")
    parser.add_argument("--floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor is not None:
        run_floor(args.floor, args.shape)
        return

    from mktdyn_sandbox.admin_client import SandboxAdmin
    from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions

    with tempfile.TemporaryDirectory(prefix="bench-marketo-") as temporary:
        workdir = Path(temporary)
        print(f"seeding a sandbox with {args.persons:,} persons ...", file=sys.stderr)
        seed_started = time.perf_counter()
        sandbox = Sandbox(
            SandboxOptions(
                directory=workdir / "sandbox",
                persons=args.persons,
                dynamics_only=0,
                limits=False,
                export_delay=args.export_delay,
                seed=7,
            )
        )
        info = sandbox.start()
        print(f"  seeded in {time.perf_counter() - seed_started:.1f} s", file=sys.stderr)
        admin = SandboxAdmin(info)
        try:
            start = (datetime.now(UTC) - timedelta(days=70)).strftime("%Y-%m-%dT%H:%M:%SZ")
            config = {
                "base_url": info["marketo_url"],
                "client_id": info["marketo_client_id"],
                "client_secret": info["marketo_client_secret"],
                "ca_bundle": info["ca_bundle"],
                "start_date": start,
                "poll_interval_seconds": 0.2,
                "window_days": 30,
            }
            config_file = workdir / "config.json"
            config_file.write_text(json.dumps(config))

            admin.marketo.reset_stats()
            tap_seconds, tap_log = _timed([TAP, "--config", str(config_file)])
            stats = admin.marketo.stats()
            records = _record_count(tap_log)

            discovered = subprocess.run(
                [TAP, "--config", str(config_file), "--discover"], capture_output=True, text=True, check=True
            )
            schema = json.loads(discovered.stdout)["streams"][0]["schema"]
            stored = admin.marketo.record("person", 1) or {}
            sample = {name: stored.get(name) for name in schema["properties"]}
            shape_file = workdir / "shape.json"
            shape_file.write_text(json.dumps({"schema": schema, "record": sample}))
            floor_seconds, _ = _timed([sys.executable, __file__, "--floor", str(records), "--shape", str(shape_file)])
        finally:
            admin.close()
            sandbox.stop()

    by_kind = stats.get("requests_by_kind", {})
    print(
        f"tap-marketo-leads: {records:,} persons in {tap_seconds:.1f} s wall = {records / tap_seconds:,.0f} persons/s"
    )
    print(
        f"  API calls: {stats.get('requests_total')} total {json.dumps(by_kind, sort_keys=True)}; "
        f"exports created: {stats.get('exports_created', 0)}"
    )
    print(f"  per endpoint: {json.dumps(stats.get('requests', {}), sort_keys=True)}")
    print(
        f"SDK floor (trivial tap, same {records:,} records, same shape): {floor_seconds:.1f} s wall "
        f"= {records / floor_seconds:,.0f} records/s"
    )
    print(f"tap overhead over the floor: {tap_seconds - floor_seconds:+.1f} s")


if __name__ == "__main__":
    main()
