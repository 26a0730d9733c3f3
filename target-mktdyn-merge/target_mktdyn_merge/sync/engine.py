"""The merging invocation: read both systems' metadata, check the configuration, plan, write back, report.

Exit codes (docs/architecture.md §9.5): record-level outcomes (validation failures, rejected writes, skips) exit 0 and
are reported, up to ``max_record_failures``; configuration, authentication, quota and store errors exit non-zero
with a one-line reason naming the setting or the API code.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mktdyn_common.errors import ConfigurationError, MktdynError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.metadata import AttributeMetadata
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from target_mktdyn_merge.core.fieldmap import FieldMap, parse_field_map, validate_field_map
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.pair_merge import MergeContext
from target_mktdyn_merge.core.policies import SyncPolicy, check_subject_template
from target_mktdyn_merge.core.validation import DynamicsValidator, MarketoValidator
from target_mktdyn_merge.core.vocabulary import ENTITIES
from target_mktdyn_merge.ops.report import render_report
from target_mktdyn_merge.sync.freshness import refresh_stale
from target_mktdyn_merge.sync.marketo_activities import post_activities
from target_mktdyn_merge.sync.outcomes import Outcomes
from target_mktdyn_merge.sync.planner import Planner, PlanSettings, merge_run_number
from target_mktdyn_merge.sync.write_context import WriteContext
from target_mktdyn_merge.sync.writeback import write_back

if TYPE_CHECKING:
    from target_mktdyn_merge.plugin.target import TargetMktdynMerge


def load_field_map(config: dict[str, Any]) -> FieldMap:
    """The configured field map (the default when ``field_map`` is empty)."""
    try:
        return parse_field_map(config.get("field_map") or {})
    except ValueError as exc:
        raise ConfigurationError("field_map", str(exc)) from exc


def load_policy(config: dict[str, Any]) -> SyncPolicy:
    """The create/delete policies."""
    try:
        return SyncPolicy.from_config(config)
    except ValueError as exc:
        raise ConfigurationError(str(exc).split(":")[0], str(exc)) from exc


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


def run_merge(target: TargetMktdynMerge, run_id: str) -> None:
    """Plan everything that changed since the last merge, then (unless a dry run) write it back."""
    config = dict(target.config)
    store = target.store
    dry_run = bool(config.get("dry_run", False))
    try:
        field_map = load_field_map(config)
        policy = load_policy(config)
        marketo = MarketoClient(MarketoConnection.from_config(config, "marketo_"))
        dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
        try:
            metadata = read_metadata(marketo, dynamics)
            check_configuration(field_map, policy, metadata)
            settings = PlanSettings(
                run_id=run_id,
                run_number=merge_run_number(store),
                dry_run=dry_run,
                field_map=field_map,
                policy=policy,
                metadata=metadata,
                sync_filter_field=config.get("sync_filter_field") or None,
            )
            if not dry_run:
                refresh_stale(store, run_id, marketo, dynamics, target.logger)
            clock = time.monotonic()
            counts: Counter[str] = Planner(store, settings).run()
            target.logger.info(
                "merge planned in %.1f s: %s",
                time.monotonic() - clock,
                ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing changed",
            )
            failures = 0
            if not dry_run:
                outcomes = Outcomes(store, run_id, MergeContext(metadata, field_map, settings.run_number))
                context = WriteContext(
                    store,
                    run_id,
                    settings_merge_context(settings),
                    outcomes,
                    DynamicsValidator(metadata.dynamics_attributes, config.get("enforce_required_levels") or "create"),
                    MarketoValidator(metadata.marketo_fields),
                )
                counts.update(write_back(context, marketo, dynamics, int(config.get("dynamics_batch_size") or 100)))
                failures = outcomes.failures()
                activity_type = str(config.get("marketo_activity_type") or "")
                if activity_type:
                    counts["posted_to_marketo"] += post_activities(store, run_id, marketo, activity_type)
            calls = {"marketo": dict(marketo.calls), "dynamics": dict(dynamics.calls)}
        finally:
            marketo.close()
            dynamics.close()
    except MktdynError as exc:
        target.stop(str(exc), exc)
    configured = config.get("max_record_failures")
    limit = int(configured) if configured is not None else 1000
    status = "failed" if failures > limit else "succeeded"
    summary = {
        "activities": dict(counts),
        "staged": store.staged_counts(),
        "api_calls": calls,
        "record_failures": failures,
    }
    error = (
        f"{failures} record-level failures exceed max_record_failures={limit}; see `mktdyn report`"
        if status == "failed"
        else None
    )
    store.finish_run(run_id, status, summary, error=error)
    render_report(store, run_id, sys.stderr)
    if error:
        raise SystemExit(f"target-mktdyn-merge: {error}")


def settings_merge_context(settings: PlanSettings) -> MergeContext:
    """The merge context of a plan's settings."""
    return MergeContext(settings.metadata, settings.field_map, settings.run_number)
