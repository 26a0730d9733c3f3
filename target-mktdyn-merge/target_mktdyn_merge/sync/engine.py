"""The merging invocation: read both systems' metadata, check the configuration, plan, write back, report.

Exit codes (docs/architecture.md §9.5): record-level outcomes (validation failures, rejected writes, skips) exit 0 and
are reported, up to ``max_record_failures``; configuration, authentication, quota and store errors exit non-zero
with a one-line reason naming the setting or the API code.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from mktdyn_common.errors import ConfigurationError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.metadata import AttributeMetadata
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.core.dynamics_validation import DynamicsValidator
from target_mktdyn_merge.core.fieldmap import FieldMap, validate_field_map
from target_mktdyn_merge.core.marketo_validation import MarketoValidator
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.pair_merge import MergeContext
from target_mktdyn_merge.core.policies import SyncPolicy, check_subject_template
from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.core.vocabulary import ENTITIES
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.history import prune_unchanged
from target_mktdyn_merge.store.metadata_answers import StoredMetadataAnswers
from target_mktdyn_merge.sync.alerts import owed_count, run_alerts, send_alerts
from target_mktdyn_merge.sync.freshness import refresh_stale
from target_mktdyn_merge.sync.marketo_activities import post_activities
from target_mktdyn_merge.sync.merge_settings import MergeSettings
from target_mktdyn_merge.sync.outcomes import Outcomes
from target_mktdyn_merge.sync.planner import Planner, PlanSettings, merge_run_number
from target_mktdyn_merge.sync.report import render_report
from target_mktdyn_merge.sync.report_data import failure_reasons
from target_mktdyn_merge.sync.write_context import WriteContext
from target_mktdyn_merge.sync.writeback import write_back

LOGGER = logging.getLogger("target-mktdyn-merge")


def read_metadata(marketo: MarketoClient, dynamics: DataverseClient) -> SyncMetadata:
    """Marketo's describe and describe2 and Dataverse's attribute metadata for lead and contact (reads only)."""
    describe = marketo.describe_leads()
    attributes: dict[str, Iterable[AttributeMetadata]] = {entity: dynamics.attributes(entity) for entity in ENTITIES}
    return SyncMetadata.from_raw(describe, attributes, marketo.describe_leads2())


def check_configuration(field_map: FieldMap, policy: SyncPolicy, metadata: SyncMetadata) -> None:
    """Refuse to run on a field map or template that does not fit the systems' metadata."""
    problems = validate_field_map(field_map, metadata.marketo_types, metadata.dynamics_types)
    problems += check_subject_template(policy.lead_subject_template, list(metadata.marketo_types))
    if problems:
        raise ConfigurationError("field_map", "; ".join(problems))


def run_merge(store: Store, settings: MergeSettings, run_id: str, logger: logging.Logger) -> None:
    """Plan everything that changed since the last merge, then (unless a dry run) write it back.

    Raises:
        MktdynError: A configuration or API error that ends the run (the plugin closes it as failed).
        SystemExit: The run completed with more record-level failures than ``max_record_failures``.
    """
    answers = StoredMetadataAnswers(store, timedelta(minutes=settings.metadata_max_age_minutes))
    marketo = MarketoClient(settings.marketo_connection(), metadata_answers=answers)
    dynamics = DataverseClient(settings.dynamics_connection(), metadata_answers=answers)
    try:
        counts, failures = _plan_and_write(store, settings, run_id, logger, marketo, dynamics)
        calls = {"marketo": dict(marketo.calls), "dynamics": dict(dynamics.calls)}
    finally:
        marketo.close()
        dynamics.close()
    _finish(store, settings, run_id, counts, failures, calls)


def _plan_and_write(
    store: Store,
    settings: MergeSettings,
    run_id: str,
    logger: logging.Logger,
    marketo: MarketoClient,
    dynamics: DataverseClient,
) -> tuple[Counter[str], int]:
    """Plan the run's writes and (unless a dry run) send them; the activities by action and the failures."""
    metadata = read_metadata(marketo, dynamics)
    logger.info(
        "field metadata: %d request(s) to the systems, the rest kept in the store (metadata_max_age_minutes %d)",
        marketo.calls["metadata"] + dynamics.calls["metadata"],
        settings.metadata_max_age_minutes,
    )
    check_configuration(settings.field_map, settings.policy, metadata)
    plan = PlanSettings(
        run_id=run_id,
        run_number=merge_run_number(store),
        dry_run=settings.dry_run,
        field_map=settings.field_map,
        policy=settings.policy,
        metadata=metadata,
        sync_filter_field=settings.sync_filter_field,
    )
    if not settings.dry_run:
        refresh_stale(store, run_id, marketo, dynamics, logger)
    clock = time.monotonic()
    counts: Counter[str] = Planner(store, plan).run()
    logger.info(
        "merge planned in %.1f s: %s",
        time.monotonic() - clock,
        ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing changed",
    )
    if settings.dry_run:
        return counts, 0
    settings.guards.check(store, run_id)  # past a bound: nothing is sent, the run stops saying why
    written, failures = write_planned(store, settings, plan, marketo, dynamics)
    counts.update(written)
    return counts, failures


def write_planned(
    store: Store,
    settings: MergeSettings,
    plan: PlanSettings,
    marketo: MarketoClient,
    dynamics: DataverseClient,
    emails_just_read: frozenset[str] = frozenset(),
) -> tuple[Counter[str], int]:
    """Send every owed write, then post the outcomes to Marketo; the activities by action and the failures.

    The batch run and the real-time path (``sync/person_sync.py``) both end with this, so a write is validated,
    sent, confirmed and logged one way whoever planned it.
    """
    metadata = plan.metadata
    outcomes = Outcomes(store, plan.run_id, settings_merge_context(plan))
    context = WriteContext(
        store,
        plan.run_id,
        settings_merge_context(plan),
        outcomes,
        DynamicsValidator(metadata.dynamics_attributes, settings.enforce_required_levels),
        MarketoValidator(metadata.marketo_fields),
        emails_just_read,
    )
    # link_only holds every create (batch or real time) until creates are turned on.
    counts = write_back(context, marketo, dynamics, settings.dynamics_batch_size, creates=not settings.guards.link_only)
    if settings.marketo_activity_type:
        counts["posted_to_marketo"] += post_activities(store, plan.run_id, marketo, settings.marketo_activity_type)
    return counts, outcomes.failures()


def _finish(
    store: Store,
    settings: MergeSettings,
    run_id: str,
    counts: Counter[str],
    failures: int,
    calls: dict[str, dict[str, int]],
) -> None:
    """Close the run in the store, prune old quiet activity, report, alert, and fail past ``max_record_failures``."""
    limit = settings.max_record_failures
    summary = {
        "activities": dict(counts),
        "staged": store.staged_counts(),
        "api_calls": calls,
        "record_failures": failures,
        "pending_writes": owed_count(store),
    }
    error = (
        f"{failures} record-level failures exceed max_record_failures={limit}; see `mktdyn report`"
        if failures > limit
        else None
    )
    store.finish_run(run_id, "failed" if error else "succeeded", summary, error=error)
    prune_activity(store, settings.activity_retention_days)
    render_report(store, run_id, sys.stderr)
    if not settings.dry_run:
        reasons = failure_reasons(store, run_id)
        send_alerts(settings.alerts, run_alerts(store, settings.alerts, run_id, failures, reasons, error), LOGGER)
    if error:
        raise SystemExit(f"target-mktdyn-merge: {error}")


def prune_activity(store: Store, days: int) -> int:
    """Delete ``unchanged`` activities older than ``days`` (0: keep them); how many went (logged)."""
    if days <= 0:
        return 0
    cutoff = utc_iso(datetime.now(UTC) - timedelta(days=days))
    with store.transaction() as connection:
        pruned = prune_unchanged(connection, cutoff)
    if pruned:
        LOGGER.info("activity retention: %d unchanged activities older than %d days deleted", pruned, days)
    return pruned


def settings_merge_context(settings: PlanSettings) -> MergeContext:
    """The merge context of a plan's settings."""
    return MergeContext(settings.metadata, settings.field_map, settings.run_number)
