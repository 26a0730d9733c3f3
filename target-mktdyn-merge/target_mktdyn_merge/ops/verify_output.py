"""What `mktdyn verify` prints: disagreements as a table or JSON lines, with the counts and API calls used."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from target_mktdyn_merge.ops.verify import VerifyResult
from target_mktdyn_merge.sync.report import table


def _shown(value: Any, width: int = 40) -> str:
    text = "∅" if value is None else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text(result: VerifyResult, out: TextIO) -> None:
    """A table of disagreements (drift first), then the counts and the API calls used."""
    ordered = sorted(result.disagreements, key=lambda d: (not d.drift, d.person_id, d.field))
    if ordered:
        rows = [
            [
                "DRIFT" if d.drift else "explained",
                d.person_id,
                f"{d.entity} {d.dynamics_id}",
                d.field,
                _shown(d.marketo_value),
                _shown(d.dynamics_value),
                _shown(d.baseline, 30) if d.baseline is not None else "-",
                d.last_activity["action"] if d.last_activity else "-",
                d.explanation or "nothing in the store explains it",
            ]
            for d in ordered
        ]
        headers = ["verdict", "person", "dynamics", "field", "marketo", "dynamics value", "baseline", "last", "why"]
        out.write(table(headers, rows) + "\n\n")
    summary = result.summary()
    out.write(
        f"verify: {summary['pairs']} pair(s), {summary['fields_compared']} field(s) compared, "
        f"{summary['disagreements']} disagreement(s): {summary['explained']} explained, {summary['drift']} drift\n"
    )
    out.write("API calls: " + _calls(result.calls) + "\n")


def _calls(calls: Mapping[str, Mapping[str, int]]) -> str:
    return "; ".join(
        f"{system} " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) for system, kinds in calls.items()
    )


def render_jsonl(result: VerifyResult, out: TextIO) -> None:
    """One JSON object per disagreement, then ``{"summary": ...}``."""
    for line in iter_jsonl(result):
        out.write(line + "\n")


def iter_jsonl(result: VerifyResult) -> Iterator[str]:
    """The JSON lines of :func:`render_jsonl`."""
    for disagreement in result.disagreements:
        yield json.dumps(disagreement.to_dict(), ensure_ascii=False, default=str)
    yield json.dumps({"summary": result.summary()}, ensure_ascii=False)
