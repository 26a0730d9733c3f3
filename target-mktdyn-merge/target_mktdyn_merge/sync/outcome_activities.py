"""The activities that report a write's failure or a value the system did not store (the outcomes' log lines)."""

from __future__ import annotations

from typing import Any

from target_mktdyn_merge.core.activity import Activity, FieldChange
from target_mktdyn_merge.core.vocabulary import ActivityAction
from target_mktdyn_merge.core.writes import OutboxEntry


def ignored_activity(
    entry: OutboxEntry, ignored: list[tuple[str, Any, Any]], person_id: str | None, created_id: str | None
) -> Activity:
    """The ``write_ignored`` record failure of fields a system acknowledged but did not store as sent."""
    system = "Marketo" if entry.system == "marketo" else "Dynamics"
    planned = entry.activity
    words = "; ".join(f"{name}: sent {sent!r}, {system} stored {landed!r}" for name, sent, landed in ignored)
    dynamics_id = entry.target_id if entry.system == "dynamics" else entry.context.dynamics_id
    if entry.system == "dynamics" and created_id is not None:
        dynamics_id = created_id
    return Activity(
        "write_ignored",
        person_id
        or (planned.person_id if planned else None)
        or (entry.target_id if entry.system == "marketo" else entry.context.person_id),
        planned.entity if planned and planned.entity else entry.entity or entry.context.entity,
        dynamics_id,
        f"to_{entry.system}",
        fields=[FieldChange(name, sent, landed) for name, sent, landed in ignored],
        rule=f"{system} acknowledged the {entry.action} but did not store the value sent; the baseline "
        "keeps what each side holds, so the next change on either side is merged afresh",
        error_code="write_ignored",
        error_message=f"{system} {entry.action} of {entry.entity or 'person'} "
        f"{entry.target_id or created_id or '(new)'}: {words}",
        details={
            "op_id": entry.op_id,
            "sent": {name: sent for name, sent, _ in ignored},
            "stored": {name: landed for name, _, landed in ignored},
        },
    )


def activity_for(entry: OutboxEntry, action: ActivityAction) -> Activity:
    """The planned activity of a write, turned into a failure/deferral record of the same record."""
    planned = entry.activity
    direction = f"to_{entry.system}"
    if planned is None:
        return Activity(
            action,
            entry.context.person_id,
            entry.entity,
            entry.context.dynamics_id,
            direction,
            details={"op_id": entry.op_id},
        )
    planned.action = action
    planned.details = {**planned.details, "op_id": entry.op_id, "planned": entry.action}
    return planned
