"""The ping-pong guard: a field whose value flips direction too often in a few runs is frozen.

See docs/architecture.md §4 (per field, after the authority rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from target_mktdyn_merge.core.vocabulary import WriteDirection


@dataclass(frozen=True)
class GuardPolicy:
    """The ping-pong guard's rule.

    A *reversal* is a planned write whose direction is the opposite of the field's previous planned write
    (to Dynamics, then to Marketo, or the other way). When a planned write would be the ``max_reversals``-th
    reversal within the last ``window_runs`` runs (this run included), the write is not planned and the
    field is frozen: outcome ``frozen`` in this and every later run until the field is cleared
    (``clear_field``, which ``mktdyn resync --field F`` calls). With the defaults, a field written to
    Dynamics, Marketo, Dynamics in three runs is frozen instead of being written to Marketo again, so at most
    three writes happen per ping-pong. Reversals older than the window are forgotten, so two people who
    simply take turns editing a field over days never trip it.

    Attributes:
        max_reversals: Reversals within the window that freeze the field.
        window_runs: How many runs (this one included) a reversal counts for.
    """

    max_reversals: int = 3
    window_runs: int = 10


@dataclass(frozen=True)
class FieldGuard:
    """Ping-pong guard state of one field of one pair (persisted between runs by the caller).

    Attributes:
        last_direction: The direction of the field's last planned write.
        reversal_runs: Run numbers of recent reversals, oldest first.
        frozen: Whether the field is frozen (no writes until cleared).
        frozen_at_run: The run that froze it.
    """

    last_direction: WriteDirection | None = None
    reversal_runs: tuple[int, ...] = ()
    frozen: bool = False
    frozen_at_run: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the store."""
        return {
            "last_direction": self.last_direction,
            "reversal_runs": list(self.reversal_runs),
            "frozen": self.frozen,
            "frozen_at_run": self.frozen_at_run,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldGuard:
        """Inverse of ``to_dict``."""
        return cls(
            last_direction=data.get("last_direction"),
            reversal_runs=tuple(int(run) for run in data.get("reversal_runs") or ()),
            frozen=bool(data.get("frozen")),
            frozen_at_run=data.get("frozen_at_run"),
        )


def _guard_step(guard: FieldGuard, direction: WriteDirection, run_number: int, policy: GuardPolicy) -> FieldGuard:
    """The guard after planning a write in ``direction``; ``frozen`` set when it must not happen."""
    oldest_counted = run_number - policy.window_runs
    reversals = tuple(run for run in guard.reversal_runs if run > oldest_counted)
    if guard.last_direction is not None and guard.last_direction != direction:
        reversals = (*reversals, run_number)
    if len(reversals) >= policy.max_reversals:
        return FieldGuard(
            last_direction=guard.last_direction,
            reversal_runs=reversals,
            frozen=True,
            frozen_at_run=run_number,
        )
    return FieldGuard(last_direction=direction, reversal_runs=reversals)
