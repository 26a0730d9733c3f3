"""Each person-level outcome as a custom activity in the person's Marketo activity log (docs/architecture.md §5).

Marketo's custom activities are write-once, so a post whose answer was lost is never simply re-sent: every
activity carries its activity-log id (``activityKey``), and an entry left in doubt is looked up in the
person's activity log before it is posted again. Posts go through the outbox like every other write.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from mktdyn_common.errors import TransientError
from tap_marketo_leads.client import ActivityTypeSpec, MarketoClient

from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.core.writes import OutboxContext, PlannedWrite
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import mark, plan_writes

logger = logging.getLogger(__name__)

#: Outcomes worth a line in the person's activity log ("unchanged" and "skipped" would only be noise).
POSTED_ACTIONS = (
    "created",
    "updated",
    "linked",
    "collision",
    "validation_failed",
    "write_failed",
    "write_ignored",
    "deleted",
    "flagged",
    "unlinked",
    "ambiguous_match",
    "deferred",
)
BATCH = 300
MAX_TEXT = 2000
#: Outcomes older than this are not posted (when the setting is first turned on, or after a long outage).
HISTORY = timedelta(days=7)


def activity_type(api_name: str) -> ActivityTypeSpec:
    """The custom activity type mktdyn creates (and approves) when it is missing."""
    return ActivityTypeSpec(
        api_name=api_name,
        name="Dynamics Sync Result",
        description="An outcome of the Marketo-Dynamics sync (mktdyn) for this person",
        trigger_name="Has Dynamics Sync Result",
        filter_name="Had Dynamics Sync Result",
        primary_attribute=("syncRunId", "Sync Run Id"),
        attributes=(
            ("action", "Action", "string"),
            ("direction", "Direction", "string"),
            ("dynamicsRecord", "Dynamics Record", "string"),
            ("fields", "Fields", "text"),
            ("detail", "Detail", "text"),
            ("activityKey", "Activity Key", "string"),
        ),
    )


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _item(activity: dict[str, Any], type_id: int) -> dict[str, Any]:
    detail = activity.get("error_message") or activity.get("rule") or ""
    if activity.get("winner"):
        detail = f"winner: {activity['winner']} ({activity.get('rule')})"
        details = activity.get("details") or {}
        if "marketo" in details or "dynamics" in details:  # a collision: both sides' values, whoever won
            detail += f"; Marketo: {_text(details.get('marketo'))}; Dynamics: {_text(details.get('dynamics'))}"
    return {
        "leadId": int(activity["person_id"]),
        "activityDate": activity["at"],
        "activityTypeId": type_id,
        "primaryAttributeValue": activity["run_id"],
        "attributes": [
            {"apiName": "action", "value": activity["action"]},
            {"apiName": "direction", "value": activity.get("direction") or ""},
            {
                "apiName": "dynamicsRecord",
                "value": f"{activity.get('entity') or ''} {activity.get('dynamics_id') or ''}".strip(),
            },
            {"apiName": "fields", "value": _text(activity.get("fields") or [])},
            {"apiName": "detail", "value": _text(detail)},
            {"apiName": "activityKey", "value": str(activity["activity_id"])},
        ],
    }


def _queue(store: Store, type_id: int, now: datetime) -> None:
    """Put unposted person-level outcomes of the last days in the outbox, once each.

    Not only this run's: a run that crashed before posting left its outcomes unposted. Older history is not
    replayed (turning the setting on must not flood activity logs with months of outcomes), and a dry run's
    outcomes never are: they did not happen.
    """
    log, outbox = tables.activity_log, tables.outbox
    since = utc_iso(now - HISTORY)
    last = 0
    while True:
        with store.transaction() as connection:
            rows = connection.execute(
                sa.select(log)
                .where(
                    log.c.activity_id > last,
                    log.c.posted_to_marketo.is_(False),
                    log.c.dry_run.is_(False),  # what a dry run would have done did not happen
                    log.c.at >= since,
                    log.c.action.in_(POSTED_ACTIONS),
                    log.c.person_id.is_not(None),
                )
                .order_by(log.c.activity_id)
                .limit(1000)
            ).all()
            if not rows:
                return
            keys = [f"activity:{r.activity_id}" for r in rows]
            queued = set(
                connection.execute(
                    sa.select(outbox.c.idempotency_key).where(outbox.c.idempotency_key.in_(keys))
                ).scalars()
            )
            writes = []
            for row in rows:
                activity = dict(row._mapping)
                activity["fields"] = json.loads(activity["fields"] or "[]")
                activity["details"] = json.loads(activity["details"] or "{}")
                key = f"activity:{row.activity_id}"
                if key in queued or not str(row.person_id).isdigit():
                    continue
                writes.append(
                    PlannedWrite(
                        "marketo",
                        "activity",
                        _item(activity, type_id),
                        target_id=str(row.person_id),
                        idempotency_key=key,
                        context=OutboxContext(activity_id=row.activity_id),
                    )
                )
            plan_writes(connection, str(rows[-1].run_id), writes, "planned")
        last = rows[-1].activity_id


def _owed(store: Store) -> list[sa.Row[Any]]:
    outbox = tables.outbox
    with store.transaction() as connection:
        return list(
            connection.execute(
                sa.select(outbox)
                .where(outbox.c.action == "activity", outbox.c.status.in_(["planned", "sent"]))
                .order_by(outbox.c.op_id)
            ).all()
        )


def _posted_keys(client: MarketoClient, type_id: int, rows: list[sa.Row[Any]]) -> set[str]:
    """ActivityKey values already in the persons' activity logs (for posts left in doubt)."""
    if not rows:
        return set()
    since = min(datetime.fromisoformat(str(r.created_at).replace("Z", "+00:00")) for r in rows) - timedelta(hours=1)
    lead_ids = sorted({int(r.target_id) for r in rows})
    keys: set[str] = set()
    for start in range(0, len(lead_ids), 30):
        for found in client.get_activities([type_id], since, lead_ids[start : start + 30]):
            for attribute in found.get("attributes") or []:
                if attribute.get("apiName") == "activityKey" or attribute.get("name") in (
                    "activityKey",
                    "Activity Key",
                ):
                    keys.add(str(attribute.get("value")))
    return keys


def post_activities(store: Store, run_id: str, client: MarketoClient, api_name: str) -> int:
    """Post this run's (and earlier runs' owed) outcomes to the persons' activity logs; return how many."""
    type_id = client.ensure_activity_type(activity_type(api_name))
    _queue(store, type_id, datetime.now(UTC))
    owed = _owed(store)
    in_doubt = [r for r in owed if r.status == "sent"]
    already = _posted_keys(client, type_id, in_doubt)
    posted = 0
    ready = []
    for row in owed:
        key = str(OutboxContext.from_dict(json.loads(row.context)).activity_id)
        if row.status == "sent" and key in already:
            _confirm(store, row.op_id, key)
            posted += 1
        else:
            ready.append(row)
    for start in range(0, len(ready), BATCH):
        chunk = ready[start : start + BATCH]
        with store.transaction() as connection:
            mark(connection, [r.op_id for r in chunk], "sent")
        try:
            outcomes = client.add_activities([{**json.loads(r.payload), "activityTypeId": type_id} for r in chunk])
            crash_point("activities-after-post")
        except TransientError as exc:
            logger.warning("posting %d Marketo activities did not complete (%s); checked next run", len(chunk), exc)
            break
        for row, outcome in zip(chunk, outcomes, strict=True):
            key = str(OutboxContext.from_dict(json.loads(row.context)).activity_id)
            if outcome.status == "added":
                _confirm(store, row.op_id, key)
                posted += 1
            else:
                code, message = outcome.reasons[0] if outcome.reasons else ("skipped", "Marketo skipped it")
                with store.transaction() as connection:
                    mark(connection, [row.op_id], "cancelled", error_code=code, error_message=message)
    return posted


def _confirm(store: Store, op_id: int, activity_id: str) -> None:
    with store.transaction() as connection:
        mark(connection, [op_id], "confirmed")
        connection.execute(
            sa.update(tables.activity_log)
            .where(tables.activity_log.c.activity_id == int(activity_id))
            .values(posted_to_marketo=True)
        )
