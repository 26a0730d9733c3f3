"""The delete half of planning: what a delete on one side does to its pair, by the delete policy.

A pair with a deleted side is never kept. The survivor gets a tombstone holding its mapped values, so the
default ``ignore`` policy does not bring the deleted record straight back from it; only a change lifts it.
"""

from __future__ import annotations

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.delete_policy import DeleteDecision, decide_delete
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.vocabulary import Entity
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite
from target_mktdyn_merge.store.tombstones import fingerprint
from target_mktdyn_merge.sync.plan_batch import PlanBatch, PlanSettings


def person_deleted(
    person: StagedRecord, pair: Pair, row: StagedRecord | None, settings: PlanSettings, batch: PlanBatch
) -> None:
    """A linked Marketo person was deleted; ``row`` is its staged lead or contact (None: not staged)."""
    live = row is not None and not row.deleted
    decision = decide_delete(
        "marketo", pair.dynamics_id, settings.policy, dynamics_entity=pair.entity, target_exists=live
    )
    _apply(decision, person.record_id, pair, batch)
    if row is not None and live:
        print_ = fingerprint(settings.field_map, pair.entity, "dynamics", row.fields)
        batch.tombstones.append(("dynamics", pair.entity, pair.dynamics_id, person.deleted_at or "", print_))


def dynamics_deleted(
    entity: Entity,
    record: StagedRecord,
    pair: Pair,
    person: StagedRecord | None,
    settings: PlanSettings,
    batch: PlanBatch,
) -> None:
    """A linked lead or contact was deleted; ``person`` is its staged Marketo person (None: not staged)."""
    live = person is not None and not person.deleted
    decision = decide_delete("dynamics", pair.marketo_id, settings.policy, dynamics_entity=entity, target_exists=live)
    _apply(decision, pair.marketo_id, pair, batch)
    if person is not None and live:
        print_ = fingerprint(settings.field_map, entity, "marketo", person.fields)
        batch.tombstones.append(("marketo", "person", pair.marketo_id, record.deleted_at or "", print_))


def _apply(decision: DeleteDecision, person_id: str, pair: Pair, batch: PlanBatch) -> None:
    """Plan the decision's write (delete or flag) or log it, unlink the pair, and say so."""
    target_system = decision.target_side
    direction = f"to_{target_system}" if decision.action != "ignore" else "none"
    outcome = Activity(
        decision.activity,
        person_id,
        pair.entity,
        pair.dynamics_id,
        direction,
        rule=decision.reason,
        details={"deleted_side": decision.deleted_side},
    )
    action = decision.action
    if action == "ignore":
        batch.activities.append(outcome)
    else:
        payload = dict(decision.flag_payload) if action == "flag" else {}
        if action == "flag" and target_system == "marketo":
            payload = {"id": int(decision.target_id), **payload}
        batch.writes.append(
            PlannedWrite(
                target_system,
                action,
                payload,
                entity=decision.target_entity,
                target_id=decision.target_id,
                context=OutboxContext(person_id=person_id, dynamics_id=pair.dynamics_id),
                activity=outcome,
            )
        )
    if decision.activity != "unlinked":
        batch.activities.append(
            Activity(
                "unlinked",
                person_id,
                pair.entity,
                pair.dynamics_id,
                "none",
                rule=f"the {decision.deleted_side} side was deleted",
            )
        )
    batch.pairs_to_delete.append(pair)
