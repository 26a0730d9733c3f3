"""Benchmark tap-dynamics-leads against a sandbox, next to a trivial singer-sdk tap (the floor).

    .venv/bin/python benchmarks/tap_dynamics.py --persons 150000 --overlap 0.6 --dynamics-only 10000

Starts a sandbox without limits, runs the tap CLI (full extraction, change tracking) with stdout to
/dev/null, and prints rows/second, wall time and the API calls the sandbox counted. The floor is an
SDK tap that emits the same number of records of the same shape from memory: the difference is what
HTTP, JSON decoding and our own code cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METRIC = re.compile(r'"metric":\s*"record_count",\s*"value":\s*(\d+).*?"stream":\s*"(\w+)"')


def start_sandbox(directory: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "mktdyn-sandbox"),
        "serve",
        "--dir",
        str(directory),
        "--persons",
        str(args.persons),
        "--overlap",
        str(args.overlap),
        "--dynamics-only",
        str(args.dynamics_only),
        "--no-limits",
        "--seed",
        str(args.seed),
    ]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while not (directory / "sandbox.json").exists():
        if process.poll() is not None:
            raise SystemExit(f"sandbox exited with {process.returncode}")
        time.sleep(0.5)
    print(f"sandbox ready in {time.monotonic() - started:.1f}s (seeding included)", file=sys.stderr)
    return process


def tap_config(info: dict[str, Any], page_size: int) -> dict[str, Any]:
    return {
        "base_url": info["dynamics_url"],
        "authority_host": info["dynamics_authority"],
        "tenant_id": info["dynamics_tenant_id"],
        "client_id": info["dynamics_client_id"],
        "client_secret": info["dynamics_client_secret"],
        "ca_bundle": info["ca_bundle"],
        "page_size": page_size,
    }


def run_cli(command: list[str], stdout: Any) -> tuple[float, dict[str, int], str]:
    started = time.monotonic()
    process = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{process.stderr[-3000:]}")
    counts: dict[str, int] = {}
    for value, stream in METRIC.findall(process.stderr):
        counts[stream] = counts.get(stream, 0) + int(value)
    return elapsed, counts, process.stderr


def admin(info: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    import requests

    session = requests.Session()
    session.trust_env = False
    response = session.request(method, f"{info['dynamics_url']}/_sandbox/{path}", verify=info["ca_bundle"], timeout=60)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


# -- the floor: a trivial SDK tap emitting records of the same shape from memory -------------------------
def floor_main(template_path: str, counts_json: str) -> None:
    import logging

    from singer_sdk import Stream, Tap

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # so the SDK's record_count metrics are printed

    template = json.loads(Path(template_path).read_text())
    counts = json.loads(counts_json)

    class MemoryStream(Stream):
        def __init__(self, tap: Tap, name: str) -> None:
            self._samples = template[name]["records"]
            self._key = template[name]["key"]
            self._count = counts.get(name, 0)
            super().__init__(tap=tap, schema=template[name]["schema"], name=name)
            self.primary_keys = [self._key]

        def get_records(self, context: Any) -> Any:
            samples = self._samples
            for index in range(self._count):
                record = dict(samples[index % len(samples)])
                record[self._key] = str(uuid.UUID(int=index))
                yield record

    class FloorTap(Tap):
        name = "tap-floor"
        config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

        def discover_streams(self) -> list[Stream]:
            return [MemoryStream(self, name) for name in template]

    FloorTap(config={}).sync_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=150000)
    parser.add_argument("--overlap", type=float, default=0.6)
    parser.add_argument("--dynamics-only", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--floor", nargs=2, metavar=("TEMPLATE", "COUNTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(*args.floor)
        return

    with tempfile.TemporaryDirectory(prefix="bench-tap-dynamics-") as temporary:
        work = Path(temporary)
        sandbox = start_sandbox(work / "sandbox", args)
        try:
            info = json.loads((work / "sandbox" / "sandbox.json").read_text())
            config_path = work / "config.json"
            config_path.write_text(json.dumps(tap_config(info, args.page_size)))
            admin(info, "POST", "stats/reset")
            with open(os.devnull, "w") as devnull:
                elapsed, counts, _ = run_cli([str(BIN / "tap-dynamics-leads"), "--config", str(config_path)], devnull)
            stats = admin(info, "GET", "stats")
            rows = sum(counts.values())

            # A sample of real records (first page) as the floor's template.
            sample_path = work / "sample.jsonl"
            small = dict(tap_config(info, 200))
            (work / "small.json").write_text(json.dumps(small))
            with sample_path.open("w") as sample_out:
                subprocess.run(
                    [str(BIN / "tap-dynamics-leads"), "--config", str(work / "small.json")],
                    stdout=sample_out,
                    stderr=subprocess.DEVNULL,
                    check=True,
                    timeout=3600,
                )
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=60)

        template: dict[str, Any] = {}
        for line in sample_path.read_text().splitlines():
            message = json.loads(line)
            if message["type"] == "SCHEMA":
                template[message["stream"]] = {
                    "schema": message["schema"],
                    "key": message["key_properties"][0],
                    "records": [],
                }
            elif message["type"] == "RECORD" and len(template[message["stream"]]["records"]) < 500:
                template[message["stream"]]["records"].append(message["record"])
        (work / "template.json").write_text(json.dumps(template))
        with open(os.devnull, "w") as devnull:
            floor_elapsed, floor_counts, _ = run_cli(
                [sys.executable, __file__, "--floor", str(work / "template.json"), json.dumps(counts)], devnull
            )

    floor_rows = sum(floor_counts.values())
    print(f"tap-dynamics-leads: {rows} rows ({counts}) in {elapsed:.1f}s = {rows / elapsed:,.0f} rows/s")
    print(
        f"floor (SDK tap, same records from memory): {floor_rows} rows in {floor_elapsed:.1f}s = "
        f"{floor_rows / floor_elapsed:,.0f} rows/s"
    )
    print(
        f"API calls (sandbox stats): {stats.get('requests_total')} total, by kind "
        f"{json.dumps(stats.get('requests_by_kind'), sort_keys=True)}; by endpoint "
        f"{json.dumps(stats.get('requests'), sort_keys=True)}"
    )


if __name__ == "__main__":
    main()
