"""The merging invocation: read both systems' metadata, check the configuration, plan, report.

Write-back (executing the outbox against both APIs) is not part of this release: a run with
``dry_run: false`` is refused with a clear message instead of pretending to sync.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from mktdyn_common.errors import ConfigurationError, MktdynError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from target_mktdyn_merge.fieldmap import FieldMap, parse_field_map, validate_field_map
from target_mktdyn_merge.metadata import SyncMetadata
from target_mktdyn_merge.planner import Planner, PlanSettings, merge_run_number
from target_mktdyn_merge.policies import SyncPolicy, check_subject_template
from target_mktdyn_merge.report import render_report

if TYPE_CHECKING:
    from target_mktdyn_merge.target import TargetMktdynMerge

ENTITIES = ("lead", "contact")


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


def read_metadata(config: dict[str, Any]) -> SyncMetadata:
    """Marketo's describe and Dataverse's attribute metadata for lead and contact (reads only)."""
    with MarketoClient(MarketoConnection.from_config(config, "marketo_")) as marketo:
        describe = marketo.describe_leads()
    dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
    try:
        attributes = {entity: dynamics.attributes(entity) for entity in ENTITIES}
    finally:
        dynamics.close()
    return SyncMetadata.from_raw(describe, attributes)


def check_configuration(field_map: FieldMap, policy: SyncPolicy, metadata: SyncMetadata) -> None:
    """Refuse to run on a field map or template that does not fit the systems' metadata."""
    problems = validate_field_map(field_map, metadata.marketo_types, metadata.dynamics_types)
    problems += check_subject_template(policy.lead_subject_template, list(metadata.marketo_types))
    if problems:
        raise ConfigurationError("field_map", "; ".join(problems))


def run_merge(target: TargetMktdynMerge, run_id: str) -> None:
    """Plan (and, in a dry run, report) everything that changed since the last merge."""
    config = dict(target.config)
    store = target.store
    try:
        if not config.get("dry_run", True):
            raise ConfigurationError(
                "dry_run",
                "write-back to Marketo and Dynamics is not available in this release; set dry_run: true "
                "to plan and report what would be written",
            )
        field_map = load_field_map(config)
        policy = load_policy(config)
        metadata = read_metadata(config)
        check_configuration(field_map, policy, metadata)
        settings = PlanSettings(
            run_id=run_id,
            run_number=merge_run_number(store),
            dry_run=True,
            field_map=field_map,
            policy=policy,
            metadata=metadata,
            sync_filter_field=config.get("sync_filter_field") or None,
        )
        counts: Counter[str] = Planner(store, settings).run()
    except MktdynError as exc:
        store.finish_run(run_id, "failed", error=str(exc))
        target.logger.error("merge failed: %s", exc)
        raise SystemExit(f"target-mktdyn-merge: {exc}") from exc
    store.finish_run(run_id, "succeeded", {"activities": dict(counts), "staged": store.staged_counts()})
    render_report(store, run_id, sys.stderr)
