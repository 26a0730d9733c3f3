"""Named points where a test may kill the target with SIGKILL, to prove crash safety (docs/architecture.md §4).

``MKTDYN_CRASH_AT=<point>[:<n>]`` kills the process the n-th time (default first) it reaches ``<point>``.
Unset (always, outside tests), a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MKTDYN_CRASH_AT"
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if the environment asks for a crash here."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
