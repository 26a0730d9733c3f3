"""Seed a fresh sandbox with N persons and report the time taken and the peak resident memory.

The sandbox promises bounded memory whatever the number of persons (docs/architecture.md §7): seeding streams the
seed plan into SQLite in chunks, so peak RSS should stay flat as ``--persons`` grows.
Usage: ``python benchmarks/sandbox_seed.py --persons 1000000 [--dir DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def directory_mib(path: Path) -> float:
    """Bytes on disk under ``path``."""
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / (1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--dynamics-only", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="sandbox directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the directory afterwards")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="mktdyn-seed-bench-"))
    if directory.exists() and any(directory.iterdir()):
        print(f"{directory} is not empty: seeding needs a fresh directory", file=sys.stderr)
        return 2
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    sandbox = Sandbox(SandboxOptions(directory=directory, persons=args.persons, dynamics_only=args.dynamics_only))
    sandbox.start()
    seconds = time.perf_counter() - started
    sandbox.stop()
    print(f"persons: {args.persons}")
    print(f"seed + start seconds: {seconds:.1f}")
    print(f"persons per second: {args.persons / seconds:,.0f}")
    print(f"peak RSS MiB: {peak_rss_mib():.1f} (before start: {rss_before:.1f})")
    print(f"data on disk MiB: {directory_mib(directory):.1f}")
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
