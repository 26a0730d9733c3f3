"""Benchmark tap-marketo-leads: a full bulk extraction from a sandbox, next to the SDK's own floor.

Starts a sandbox without rate limits (``--persons``, default 100,000), runs the tap's CLI with its output kept
in a file, and prints persons/second, wall time and the API calls the run used (sandbox stats). Then runs a
trivial singer-sdk tap that emits the same number of records of the same shape (the framework's floor: what
any SDK tap costs per record before talking to an API). `make bench` runs the same comparison as scenario 5.

    .venv/bin/python benchmarks/tap_marketo.py --persons 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    SandboxServer,
    SeedSpec,
    marketo_tap_config,
    measure_tap_alone,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--export-delay", type=float, default=0.05, help="sandbox seconds per export phase")
    args = parser.parse_args()
    spec = SeedSpec(args.persons, dynamics_only=0, seed=7)

    with tempfile.TemporaryDirectory(prefix="bench-marketo-") as temporary:
        work = Path(temporary)
        print(f"seeding a sandbox with {args.persons:,} persons ...", file=sys.stderr)
        with SandboxServer(work / "sandbox", spec, limits=False, export_delay=args.export_delay) as sandbox:
            run = measure_tap_alone(
                sandbox, "tap-marketo-leads", marketo_tap_config(sandbox.info, window_days=30), work
            )
    tap, calls, floor, records = run.tap, run.calls, run.floor, run.records

    rate = records / tap.seconds
    print(f"tap-marketo-leads: {records:,} persons in {tap.seconds:.1f} s wall = {rate:,.0f} persons/s")
    print(f"  API calls: {json.dumps(calls.by_kind['marketo'], sort_keys=True)}")
    print(f"  per endpoint: {json.dumps(calls.by_endpoint['marketo'], sort_keys=True)}")
    print(
        f"SDK floor (trivial tap, same {records:,} records, same shape): {floor.seconds:.1f} s wall "
        f"= {records / floor.seconds:,.0f} records/s"
    )
    print(f"tap overhead over the floor: {tap.seconds - floor.seconds:+.1f} s")


if __name__ == "__main__":
    main()
