"""The create half of planning: a Dynamics lead for a person, a Marketo person for a lead or contact.

Both build the create's payload with the policies' own functions (the same the real-time path uses), give it
an idempotency key that names what it is for (so a replayed or repeated plan sends one create), and attach the
``created`` activity that the write-back reports once the create is confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.normalize import OptionSet
from target_mktdyn_merge.core.policies import SubjectTemplateError, lead_create_payload, person_create_payload
from target_mktdyn_merge.core.records import StagedRecord
from target_mktdyn_merge.core.vocabulary import Entity
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite
from target_mktdyn_merge.sync.plan_batch import PlanSettings


def lead_create(
    person: StagedRecord, settings: PlanSettings, options: Mapping[str, OptionSet], reason: str
) -> PlannedWrite | Activity:
    """The planned create of ``person``'s Dynamics lead, or the ``validation_failed`` activity saying why not."""
    try:
        payload = lead_create_payload(
            person.fields,
            settings.policy,
            field_map=settings.field_map,
            options=options,
            not_creatable=settings.metadata.dynamics_not_creatable("lead"),
        )
    except SubjectTemplateError as exc:
        return Activity(
            "validation_failed",
            person.record_id,
            "lead",
            None,
            "to_dynamics",
            rule="lead_subject_template",
            error_code="template",
            error_message=str(exc),
        )
    return PlannedWrite(
        "dynamics",
        "create",
        payload,
        entity="lead",
        idempotency_key=f"lead-for-person:{person.record_id}",
        context=OutboxContext(person_id=person.record_id),
        activity=Activity(
            "created",
            person.record_id,
            "lead",
            None,
            "to_dynamics",
            fields=[FieldChange(k, None, v) for k, v in sorted(payload.items())],
            rule=reason,
        ),
    )


def person_create(
    entity: Entity,
    dynamics_id: str,
    fields: Mapping[str, Any],
    settings: PlanSettings,
    options: Mapping[str, OptionSet],
    reason: str,
) -> PlannedWrite:
    """The planned create of a Marketo person from the lead or contact ``dynamics_id`` (its ``fields``)."""
    payload = person_create_payload(
        fields,
        entity,
        field_map=settings.field_map,
        options=options,
        marketo_read_only=settings.metadata.marketo_not_creatable,
    )
    return PlannedWrite(
        "marketo",
        "create",
        payload,
        entity=entity,
        target_id=None,
        idempotency_key=f"person-for-{entity}:{dynamics_id}",
        context=OutboxContext(dynamics_id=dynamics_id, entity=entity),
        activity=Activity(
            "created",
            None,
            entity,
            dynamics_id,
            "to_marketo",
            fields=[FieldChange(k, None, v) for k, v in sorted(payload.items())],
            rule=reason,
        ),
    )


def created_since(created_at: Any, initial_sync_started: str | None) -> bool:
    """Whether a person was created after the initial sync started (so its first link is on the create path).

    During the initial sync nothing is. A person whose ``createdAt`` is unknown (not selected, unreadable)
    counts as new once an initial sync has succeeded, as the create path's rule is the one that overwrites
    nothing.
    """
    if initial_sync_started is None:
        return False
    try:
        created = datetime.fromisoformat(str(created_at))
        started = datetime.fromisoformat(initial_sync_started)
    except ValueError:
        return True
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return created > started
