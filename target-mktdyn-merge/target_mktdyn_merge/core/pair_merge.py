"""One pair's merge as writes and activities, shared by planning and by the write-back's re-merge.

The write-back re-merges a pair when Dynamics answers 412 (the row moved since extraction) or when the
re-read of a Marketo person shows it moved; it must reach exactly the decisions planning would have, so
both go through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.fieldmap import FieldMap
from target_mktdyn_merge.core.merge import FieldDecision, MergeResult, PairInput, merge_pair
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.core.vocabulary import ENTITY_AUTHORITY, SIDES, Side
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite, WrittenField


@dataclass(frozen=True)
class MergeContext:
    """What a merge needs besides the pair and the two records."""

    metadata: SyncMetadata
    field_map: FieldMap
    run_number: int


def merge(
    context: MergeContext,
    pair: Pair,
    person: Mapping[str, Any],
    row: Mapping[str, Any],
    *,
    create_path: bool = False,
) -> MergeResult:
    """Merge one pair's current values against its baseline (``create_path``: see ``PairInput``)."""
    metadata = context.metadata
    return merge_pair(
        PairInput(
            entity=pair.entity,
            marketo=person,
            dynamics=row,
            run_number=context.run_number,
            baseline=pair.baseline,
            first_link=not pair.first_merge_done,
            options=metadata.options(pair.entity),
            marketo_read_only=metadata.marketo_read_only,
            dynamics_read_only=metadata.dynamics_not_updatable(pair.entity),
            field_map=context.field_map,
            guards=pair.guards,
            authority_override=_authority_override(pair),
            create_path=create_path,
        )
    )


def _authority_override(pair: Pair) -> Side | None:
    """The authority stored with the pair, when it is not the entity's default (the merge's ``authority_override``)."""
    if pair.authority in SIDES and pair.authority != ENTITY_AUTHORITY[pair.entity]:
        return "marketo" if pair.authority == "marketo" else "dynamics"
    return None


def kept_differences(result: MergeResult) -> list[dict[str, Any]]:
    """Fields a first link on the create path left different, with both values (for the ``linked`` activity)."""
    return [
        {"field": d.field, "column": d.column, "marketo": d.marketo_value, "dynamics": d.dynamics_value}
        for d in result.decisions
        if d.outcome == "kept"
    ]


def decision_activities(pair: Pair, result: MergeResult) -> list[Activity]:
    """Activities of the decisions themselves: collisions, blocked or frozen fields, or 'unchanged'."""
    base: dict[str, Any] = {"person_id": pair.marketo_id, "entity": pair.entity, "dynamics_id": pair.dynamics_id}
    activities = [collision_activity(decision, base) for decision in result.collisions]
    activities += [
        Activity(
            "skipped",
            direction="none",
            rule=decision.rule,
            fields=[FieldChange(decision.field, decision.marketo_value, decision.dynamics_value)],
            details={"outcome": decision.outcome},
            **base,
        )
        for decision in result.decisions
        if decision.outcome in ("blocked", "frozen")
    ]
    if not result.has_writes and not result.collisions:
        activities.append(Activity("unchanged", direction="none", **base))
    return activities


def collision_activity(decision: FieldDecision, base: Mapping[str, Any]) -> Activity:
    """A collision read the way it is written: old is the value overwritten, new the winning value.

    The side written to is the loser's (``direction``); ``old`` is what that side holds, ``new`` what it
    receives (the native value planned for it, or the winner's value when the write is blocked or frozen).
    ``details`` keeps both sides' values, the winner and the rule, whatever the direction.
    """
    marketo_won = decision.winner == "marketo"
    overwritten = decision.dynamics_value if marketo_won else decision.marketo_value
    winning = decision.marketo_value if marketo_won else decision.dynamics_value
    return Activity(
        "collision",
        direction="to_dynamics" if marketo_won else "to_marketo",
        fields=[FieldChange(decision.field, overwritten, decision.written_value if decision.writes else winning)],
        winner=decision.winner,
        rule=decision.rule,
        details={
            "column": decision.column,
            "marketo": decision.marketo_value,
            "dynamics": decision.dynamics_value,
            "winner": decision.winner,
            "rule": decision.rule,
            "outcome": decision.outcome,
        },
        **base,
    )


def merge_writes(pair: Pair, result: MergeResult, etag: str | None) -> list[PlannedWrite]:
    """The writes a merge calls for.

    Each carries the activity to log once it is confirmed and what the baseline needs then: the other side's
    canonical value per written field.
    """
    base: dict[str, Any] = {"person_id": pair.marketo_id, "entity": pair.entity, "dynamics_id": pair.dynamics_id}
    writes: list[PlannedWrite] = []
    for direction in ("to_dynamics", "to_marketo"):
        decisions = [d for d in result.decisions if d.outcome == direction]
        if not decisions:
            continue
        to_dynamics = direction == "to_dynamics"
        fields = tuple(
            WrittenField(
                d.field, d.column, d.mapping.kind, d.marketo_canonical if to_dynamics else d.dynamics_canonical
            )
            for d in decisions
        )
        changes = [
            FieldChange(
                d.column if to_dynamics else d.field,
                d.dynamics_value if to_dynamics else d.marketo_value,
                d.written_value,
            )
            for d in decisions
        ]
        activity = Activity("updated", direction=direction, fields=changes, **base)
        if to_dynamics:
            writes.append(
                PlannedWrite(
                    "dynamics",
                    "update",
                    dict(result.to_dynamics),
                    entity=pair.entity,
                    target_id=pair.dynamics_id,
                    pair_id=pair.pair_id,
                    context=OutboxContext(person_id=pair.marketo_id, etag=etag, fields=fields),
                    activity=activity,
                )
            )
        else:
            writes.append(
                PlannedWrite(
                    "marketo",
                    "update",
                    {"id": int(pair.marketo_id), **result.to_marketo},
                    entity=pair.entity,
                    target_id=pair.marketo_id,
                    pair_id=pair.pair_id,
                    context=OutboxContext(dynamics_id=pair.dynamics_id, fields=fields),
                    activity=activity,
                )
            )
    return writes
