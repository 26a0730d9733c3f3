"""Baselines: the values both systems were last confirmed to hold, per field, and the one place they move.

A field flows only when it changed since its baseline (docs/architecture.md §4), so a baseline moves only on a
confirmed write or an observed agreement; every such move goes through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP, FieldMap
from target_mktdyn_merge.core.normalize import (
    Canonical,
    OptionSet,
    canonical,
)
from target_mktdyn_merge.core.vocabulary import Entity, Side

if TYPE_CHECKING:
    from target_mktdyn_merge.core.guards import FieldGuard
    from target_mktdyn_merge.core.merge import MergeResult


@dataclass(frozen=True)
class BaselineEntry:
    """What each system last confirmed storing for one field of one pair, as canonical values.

    Per side because a system may store something other than what we sent (Dynamics truncates to
    MaxLength, Marketo reformats): comparing each side with its own baseline tells "changed" from
    "stored differently".

    Attributes:
        marketo: Marketo's stored value, canonical.
        dynamics: Dynamics' stored value, canonical.
    """

    marketo: Canonical
    dynamics: Canonical

    def to_dict(self) -> dict[str, Canonical]:
        """JSON-ready form, for the store."""
        return {"marketo": self.marketo, "dynamics": self.dynamics}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineEntry:
        """Inverse of ``to_dict``."""
        return cls(marketo=data.get("marketo"), dynamics=data.get("dynamics"))


def clear_field(
    baseline: Mapping[str, BaselineEntry], guards: Mapping[str, FieldGuard], marketo_field: str
) -> tuple[dict[str, BaselineEntry], dict[str, FieldGuard]]:
    """Forget a field's baseline and guard (``mktdyn resync --field F``).

    The next merge then treats the field as never synced: equal values are in sync, a blank never
    overwrites a value, and other differences are collisions the authority decides.
    """
    return (
        {name: entry for name, entry in baseline.items() if name != marketo_field},
        {name: guard for name, guard in guards.items() if name != marketo_field},
    )


def confirm_baseline(
    previous: Mapping[str, BaselineEntry],
    result: MergeResult,
    *,
    dynamics_stored: Mapping[str, Any] | None = None,
    marketo_stored: Mapping[str, Any] | None = None,
    options: Mapping[str, OptionSet] | None = None,
) -> dict[str, BaselineEntry]:
    """The baseline after a merge's writes, moving only what was confirmed stored.

    - ``in_sync``: both sides at their current values (nothing was written; they agree).
    - ``to_dynamics`` with the Dynamics write confirmed (``dynamics_stored`` given): Dynamics' side is what
      Dynamics returned (``Prefer: return=representation``), Marketo's is Marketo's current value. A column
      missing from the representation counts as stored as sent.
    - ``to_marketo`` with the Marketo write confirmed (``marketo_stored`` given, from the re-read or the
      next extraction): Marketo's side is what Marketo holds, Dynamics' is Dynamics' current value.
    - ``blocked``: both sides at their current values: the change was seen and the map says it does not
      flow, so it is reported once and is a stable divergence afterwards (no report every five minutes).
    - ``kept`` (a first link on the create path): both sides at their current values, so that only later
      changes flow.
    - A write not confirmed (pending, failed, deferred: ``None`` for that side), and ``stable``, ``frozen``,
      ``unknown``: unchanged.

    Args:
        previous: The baseline the merge ran against.
        result: The merge.
        dynamics_stored: The Dynamics row as returned by the confirmed write; None if not confirmed.
        marketo_stored: The Marketo person's stored values after the confirmed write; None if not
            confirmed.
        options: Dynamics column → option set, to canonicalize stored option values.

    Returns:
        The new baseline (entries of fields the result does not cover are kept).
    """
    baseline = dict(previous)
    option_sets = options or {}
    for decision in result.decisions:
        rule = decision.mapping
        option_set = option_sets.get(rule.dynamics)
        if decision.outcome in {"in_sync", "blocked", "kept"}:
            baseline[rule.marketo] = BaselineEntry(decision.marketo_canonical, decision.dynamics_canonical)
        elif decision.outcome == "to_dynamics" and dynamics_stored is not None:
            stored = dynamics_stored.get(rule.dynamics, decision.written_value)
            baseline[rule.marketo] = landed_entry("dynamics", rule.kind, stored, decision.marketo_canonical, option_set)
        elif decision.outcome == "to_marketo" and marketo_stored is not None:
            stored = marketo_stored.get(rule.marketo, decision.written_value)
            baseline[rule.marketo] = landed_entry("marketo", rule.kind, stored, decision.dynamics_canonical, option_set)
    return baseline


def landed_entry(side: Side, kind: str, stored: Any, other: Any, option_set: OptionSet | None) -> BaselineEntry:
    """A field's baseline once a write to ``side`` is confirmed: what that side stored, and the other's value.

    The one rule for moving a baseline after a write, whether the merge sees the confirmation (a re-merge) or
    the outcome of an outbox entry does (docs/architecture.md §3: baselines move only on confirmed writes).
    """
    landed = canonical(kind, stored, option_set)
    return BaselineEntry(other, landed) if side == "dynamics" else BaselineEntry(landed, other)


def snapshot_baseline(
    entity: Entity,
    marketo: Mapping[str, Any],
    dynamics: Mapping[str, Any],
    field_map: FieldMap = DEFAULT_FIELD_MAP,
    options: Mapping[str, OptionSet] | None = None,
) -> dict[str, BaselineEntry]:
    """A baseline of both sides' current values, for every field known on both sides.

    For a pair just created on one side from the other (the created record as stored, and its source):
    from then on, only real changes count.
    """
    option_sets = options or {}
    baseline: dict[str, BaselineEntry] = {}
    for rule in field_map.rules(entity):
        if rule.marketo in marketo and rule.dynamics in dynamics:
            option_set = option_sets.get(rule.dynamics)
            baseline[rule.marketo] = BaselineEntry(
                canonical(rule.kind, marketo[rule.marketo], option_set),
                canonical(rule.kind, dynamics[rule.dynamics], option_set),
            )
    return baseline
