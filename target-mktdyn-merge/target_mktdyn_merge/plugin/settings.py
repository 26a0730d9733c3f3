"""The target's settings (docs/architecture.md §9.4), declared once; ``target.py`` exposes them as config_jsonschema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from mktdyn_common.settings import number_setting
from singer_sdk import typing as th
from tap_dynamics_leads.tap import TapDynamicsLeads
from tap_marketo_leads.tap import TapMarketoLeads

from target_mktdyn_merge.core.delete_policy import DeletePolicy
from target_mktdyn_merge.core.policies import CreateInDynamics, SyncPolicy, setting_docs
from target_mktdyn_merge.sync.merge_settings import REQUIRED_LEVELS, MergeSettings

#: Titles and descriptions of the create/delete settings, defined with their behaviour in ``policies``.
DOCS = setting_docs()
#: The create/delete policies' defaults, stated once on the policy type.
POLICY = SyncPolicy()

#: Tap settings the target reuses for its write connections, under a system prefix.
CONNECTION_SETTINGS = {
    "marketo": (
        "base_url",
        "client_id",
        "client_secret",
        "ca_bundle",
        "proxy",
        "request_timeout",
        "user_agent",
        "page_size",
        "max_daily_calls",
    ),
    "dynamics": (
        "base_url",
        "tenant_id",
        "client_id",
        "client_secret",
        "client_certificate_path",
        "client_certificate_thumbprint",
        "auth_flow",
        "username",
        "password",
        "authority_host",
        "ca_bundle",
        "proxy",
        "request_timeout",
        "user_agent",
        "page_size",
        "api_version",
    ),
}


def _connection_properties(system: str, tap_schema: dict[str, Any]) -> list[th.Property[Any]]:
    """The tap's connection settings under ``{system}_``, same types, titles, defaults and secrecy."""
    properties = []
    for name in CONNECTION_SETTINGS[system]:
        source = tap_schema["properties"][name]
        wrapped = th.CustomType(
            {k: v for k, v in source.items() if k not in ("title", "description", "default", "secret", "writeOnly")}
        )
        properties.append(
            th.Property(
                f"{system}_{name}",
                wrapped,
                title=f"{system.capitalize()}: {source.get('title', name)}",
                description=f"{source.get('description', '')} (same as the tap's {name!r} setting)".strip(),
                default=source.get("default"),
                secret=bool(source.get("secret")),
            )
        )
    return properties


def _run_properties() -> list[th.Property[Any]]:
    """Where the store is, what a run does (stage or merge, dry run) and how it waits for the lock."""
    return [
        th.Property(
            "store_url",
            th.StringType,
            title="Store URL",
            description="SQLAlchemy URL of the store; default sqlite:///<MELTANO_PROJECT_ROOT or cwd>/"
            ".mktdyn/store.db; postgresql+psycopg://user:pass@host/db for teams. Secret: it may carry the "
            "database password.",
            secret=True,
        ),
        th.Property(
            "merge",
            th.BooleanType,
            default=True,
            title="Merge after staging",
            description="true: stage, then match, merge and write back; false: only stage (the first "
            "leg of the job, target-mktdyn-stage).",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            title="Dry run",
            description="Compute and log everything, write nothing to either system.",
        ),
        th.Property(
            "lock_wait",
            th.BooleanType,
            default=True,
            title="Wait for the store's write lock",
            description="Only one run merges and writes at a time. true: a run that finds another one "
            "writing waits for it (up to lock_timeout_seconds); false: it exits non-zero at once, "
            "having written nothing.",
        ),
        th.Property(
            "lock_timeout_seconds",
            th.CustomType(number_setting()),
            default=600,
            title="Write lock timeout (seconds)",
            description="How long a run waits for another run's write lock (when lock_wait is true) "
            "before it exits non-zero, having written nothing.",
        ),
    ]


def _policy_properties() -> list[th.Property[Any]]:
    """What is synced and how: the field map, creates, deletes (defaults are the policy's own)."""
    return [
        th.Property(
            "field_map",
            th.ObjectType(additional_properties=True),
            title="Field map",
            description="Pairs Marketo fields with Dynamics columns per entity; see the README. Empty "
            "uses the default map.",
        ),
        th.Property(
            "create_in_dynamics",
            th.StringType,
            default=POLICY.create_in_dynamics,
            allowed_values=list(get_args(CreateInDynamics)),
            title=DOCS["create_in_dynamics"][0],
            description=DOCS["create_in_dynamics"][1],
        ),
        th.Property(
            "create_flag_field",
            th.StringType,
            default=POLICY.create_flag_field,
            title=DOCS["create_flag_field"][0],
            description=DOCS["create_flag_field"][1],
        ),
        th.Property(
            "create_in_marketo",
            th.BooleanType,
            default=POLICY.create_in_marketo,
            title=DOCS["create_in_marketo"][0],
            description=DOCS["create_in_marketo"][1],
        ),
        th.Property(
            "lead_subject_template",
            th.StringType,
            default=POLICY.lead_subject_template,
            title="Lead topic template",
            description="Template of the required lead topic (subject) for leads created from persons; "
            "{field} placeholders name Marketo fields.",
        ),
        th.Property(
            "delete_from_dynamics",
            th.StringType,
            default=POLICY.delete_from_dynamics,
            allowed_values=list(get_args(DeletePolicy)),
            title=DOCS["delete_from_dynamics"][0],
            description=DOCS["delete_from_dynamics"][1],
        ),
        th.Property(
            "delete_from_marketo",
            th.StringType,
            default=POLICY.delete_from_marketo,
            allowed_values=list(get_args(DeletePolicy)),
            title=DOCS["delete_from_marketo"][0],
            description=DOCS["delete_from_marketo"][1],
        ),
        th.Property(
            "delete_flag_field_marketo",
            th.StringType,
            default=POLICY.delete_flag_field_marketo,
            title=DOCS["delete_flag_field_marketo"][0],
            description=DOCS["delete_flag_field_marketo"][1],
        ),
        th.Property(
            "delete_flag_field_dynamics",
            th.StringType,
            default=POLICY.delete_flag_field_dynamics,
            title=DOCS["delete_flag_field_dynamics"][0],
            description=DOCS["delete_flag_field_dynamics"][1],
        ),
    ]


def _limit_properties() -> list[th.Property[Any]]:
    """What a run filters, enforces and tolerates, and how it batches its writes."""
    return [
        th.Property(
            "sync_filter_field",
            th.StringType,
            default="new_synctomkto",
            title="Sync filter column",
            description="Dynamics two-option column; rows where it is explicitly No are not synced. "
            "Empty syncs everything.",
        ),
        th.Property(
            "enforce_required_levels",
            th.StringType,
            default="create",
            allowed_values=list(REQUIRED_LEVELS),
            title="Enforce required levels",
            description="Enforce Dynamics ApplicationRequired columns: never, on creates (default), or "
            "on creates and updates. SystemRequired is always enforced.",
        ),
        th.Property(
            "marketo_activity_type",
            th.StringType,
            default="",
            title="Marketo activity type",
            description="API name of the custom activity type that records sync outcomes in the "
            "person's activity log (created and approved if missing); empty: not posted.",
        ),
        th.Property(
            "max_record_failures",
            th.IntegerType,
            default=100,
            title="Maximum record failures",
            description="Record-level failures (validation, rejected writes) tolerated before the run exits non-zero "
            "(closed as failed, and alerted). 100 by default: a run with more is broken, not unlucky; raise it for a "
            "known backlog.",
        ),
        th.Property(
            "max_reconcile_deletes",
            th.IntegerType,
            default=100,
            title="Maximum deletes found by key reconciliation",
            description="Records a full extraction may miss (and so be treated as deleted, after a read by id "
            "confirms it) per stream and run; beyond it the run writes nothing and exits non-zero, saying why.",
        ),
        th.Property(
            "max_reconcile_share",
            th.CustomType(number_setting()),
            default=0.1,
            title="Maximum share deleted by key reconciliation",
            description="Share (0-1) of a stream's live staged records a full extraction may miss per run "
            "(checked beyond 5 records); beyond it the run writes nothing and exits non-zero, saying why.",
        ),
        th.Property(
            "dynamics_batch_size",
            th.IntegerType,
            default=100,
            title="Dataverse $batch size",
            description="Operations per Dataverse $batch request (at most 1000).",
        ),
    ]


def _alert_properties() -> list[th.Property[Any]]:
    """Alerts and the activity log's retention: what tells a person about a run, and what the log keeps."""
    return [
        th.Property(
            "alert_webhook_url",
            th.StringType,
            default="",
            title="Alert webhook URL",
            description='Slack-compatible incoming webhook (JSON {"text": ...}; Teams and PagerDuty relays read it '
            "too) notified when a run fails, when its record failures reach alert_record_failures, and when the "
            "writes still owed grow over alert_pending_runs runs. https (http only on loopback). Secret: such URLs "
            "carry a token. Empty: no alerts.",
            secret=True,
        ),
        th.Property(
            "alert_record_failures",
            th.IntegerType,
            default=10,
            title="Alert at this many record failures",
            description="A run with at least this many record-level failures alerts (0: never; a failed run "
            "always alerts).",
        ),
        th.Property(
            "alert_pending_runs",
            th.IntegerType,
            default=3,
            title="Alert when owed writes grow over this many runs",
            description="Alert when the writes still owed grew in each of this many consecutive runs (0: never).",
        ),
        th.Property(
            "activity_retention_days",
            th.IntegerType,
            default=30,
            title="Keep unchanged activities (days)",
            description="unchanged rows of the activity log older than this are deleted at the end of each run "
            "(every other action is kept; each run's summary keeps its counts). 0 keeps them forever.",
        ),
        th.Property(
            "metadata_max_age_minutes",
            th.IntegerType,
            default=60,
            title="Reuse field metadata (minutes)",
            description="how long a merge run reuses both systems' field metadata (Marketo describe, Dataverse "
            "column metadata: 21 requests) kept in the store by an earlier run; a field an administrator changes "
            "reaches the sync within this time. 0 reads it every run. mktdyn check always reads it fresh.",
        ),
    ]


def _guard_properties() -> list[th.Property[Any]]:
    """The write phase's guards of a first production sync (or a mistake): caps, change share, link-only."""
    return [
        th.Property(
            "max_creates_in_marketo",
            th.IntegerType,
            default=1000,
            title="Maximum Marketo creates per run",
            description="Persons one run may create in Marketo; past it the write phase sends nothing to either "
            "system and exits non-zero saying why (the writes stay owed). Raise it, or set allow_mass_change for "
            "one run, for an initial load.",
        ),
        th.Property(
            "max_creates_in_dynamics",
            th.IntegerType,
            default=1000,
            title="Maximum Dynamics creates per run",
            description="Leads one run may create in Dynamics; past it the write phase sends nothing to either "
            "system and exits non-zero saying why (the writes stay owed).",
        ),
        th.Property(
            "max_change_share",
            th.CustomType(number_setting()),
            default=0.5,
            title="Maximum share of linked pairs changed per run",
            description="Share (0-1) of the pairs linked before a run that it may update (checked beyond 20 "
            "pairs); past it the write phase sends nothing to either system and exits non-zero saying why. A wrong "
            "field map or a bulk edit stops here until allowed.",
        ),
        th.Property(
            "allow_mass_change",
            th.BooleanType,
            default=False,
            title="Allow a mass change for this run",
            description="Lets one run past max_creates_in_marketo, max_creates_in_dynamics and max_change_share; "
            "set it for that run only (TARGET_MKTDYN_MERGE_ALLOW_MASS_CHANGE=true), never in meltano.yml.",
        ),
        th.Property(
            "link_only",
            th.BooleanType,
            default=False,
            title="Link only (create nothing)",
            description="Match, link and keep linked pairs in step, but create nothing in either system; planned "
            "creates stay owed until it is turned off (the README's first-production-sync playbook).",
        ),
    ]


def _serve_properties() -> list[th.Property[Any]]:
    """Settings of ``mktdyn serve``, the real-time path (a Marketo webhook; docs/architecture.md §10)."""
    return [
        th.Property(
            "serve_secret",
            th.StringType,
            title="Webhook secret",
            description="Shared secret the Marketo webhook sends in the serve_secret_header header (a custom "
            "header of the webhook); requests without it are refused with 401. Required by `mktdyn serve`; at "
            "least 16 characters.",
            secret=True,
        ),
        th.Property(
            "serve_secret_header",
            th.StringType,
            default="X-Mktdyn-Secret",
            title="Webhook secret header",
            description="Name of the HTTP header carrying serve_secret.",
        ),
        th.Property(
            "serve_queue_limit",
            th.IntegerType,
            default=1000,
            title="Real-time queue limit",
            description="Requests `mktdyn serve` keeps waiting in the store at most; past it a request is "
            "answered 503 with Retry-After (Marketo logs the failed call) instead of growing the queue.",
        ),
        th.Property(
            "serve_answer_wait_seconds",
            th.CustomType(number_setting()),
            default=25,
            title="Answer wait (seconds)",
            description="How long a webhook call waits for its person to be synced before it is answered 202 "
            "(queued; processed anyway). Keep it under Marketo's 30 s webhook timeout.",
        ),
        th.Property(
            "serve_batch_size",
            th.IntegerType,
            default=300,
            title="Real-time batch size",
            description="Queued requests one pass of the worker takes together (one Marketo leads.json read "
            "and one Dataverse $batch for all of them; 300 is one Marketo call).",
        ),
    ]


def build_config_schema() -> dict[str, Any]:
    """The full settings schema of target-mktdyn-merge."""
    return th.PropertiesList(
        *_run_properties(),
        *_connection_properties("marketo", TapMarketoLeads.config_jsonschema),
        *_connection_properties("dynamics", TapDynamicsLeads.config_jsonschema),
        *_policy_properties(),
        *_limit_properties(),
        *_alert_properties(),
        *_guard_properties(),
        *_serve_properties(),
    ).to_dict()


#: The settings schema, built once (the Target's config_jsonschema; ``mktdyn check`` validates against it).
CONFIG_SCHEMA = build_config_schema()


def merge_settings(config: Mapping[str, Any]) -> MergeSettings:
    """The run's settings: ``config`` completed with the schema's defaults, as the SDK completes its own.

    The one way code outside the SDK's Target (``mktdyn check``, ``mktdyn verify``) builds settings, so a
    setting's default is the schema's everywhere.
    """
    return MergeSettings.from_config(with_defaults(config))


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` completed with the schema's defaults (what the SDK does for the target's own config)."""
    defaults = {name: spec["default"] for name, spec in CONFIG_SCHEMA["properties"].items() if "default" in spec}
    return {**defaults, **{k: v for k, v in config.items() if v is not None}}
