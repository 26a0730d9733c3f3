"""Benchmark tap-dynamics-leads against a sandbox, next to a trivial singer-sdk tap (the floor).

    .venv/bin/python benchmarks/tap_dynamics.py --persons 150000 --overlap 0.6 --dynamics-only 10000

Starts a sandbox without limits, runs the tap CLI (full extraction, change tracking) with its output kept in a
file, and prints rows/second, wall time and the API calls the sandbox counted. The floor is an SDK tap that
emits the same number of records of the same shape from memory: the difference is what HTTP, JSON decoding
and our own code cost. `make bench` runs the same comparison as its scenario 5.
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
    dynamics_tap_config,
    measure_tap_alone,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=150000)
    parser.add_argument("--overlap", type=float, default=0.6)
    parser.add_argument("--dynamics-only", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()
    spec = SeedSpec(args.persons, args.dynamics_only, args.overlap, args.seed)

    with tempfile.TemporaryDirectory(prefix="bench-tap-dynamics-") as temporary:
        work = Path(temporary)
        with SandboxServer(work / "sandbox", spec, limits=False) as sandbox:
            run = measure_tap_alone(
                sandbox, "tap-dynamics-leads", dynamics_tap_config(sandbox.info, page_size=args.page_size), work
            )
    tap, calls, floor, rows, counts = run.tap, run.calls, run.floor, run.records, run.tap.record_counts()

    print(f"tap-dynamics-leads: {rows} rows ({counts}) in {tap.seconds:.1f}s = {rows / tap.seconds:,.0f} rows/s")
    print(
        f"floor (SDK tap, same records from memory): {sum(floor.record_counts().values())} rows in "
        f"{floor.seconds:.1f}s = {rows / floor.seconds:,.0f} rows/s"
    )
    print(
        f"API calls (sandbox stats): by kind {json.dumps(calls.by_kind['dynamics'], sort_keys=True)}; "
        f"by endpoint {json.dumps(calls.by_endpoint['dynamics'], sort_keys=True)}"
    )


if __name__ == "__main__":
    main()
