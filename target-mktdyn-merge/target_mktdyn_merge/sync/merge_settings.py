"""The target's settings as one frozen, typed object, built once per run from the validated config.

Defaults and allowed values live in the settings schema the plugin declares (``plugin/settings.py``; the
create/delete policies' on :class:`SyncPolicy` in the core, which the schema reads), and the plugin completes
the config with them before building this object, so a default is written once (docs/architecture.md §9.4).
Code below the plugin reads ``settings.max_record_failures``, never ``config.get("max_record_failures") or 1000``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from mktdyn_common.errors import ConfigurationError
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.connection import MarketoConnection

from target_mktdyn_merge.core.fieldmap import FieldMap, parse_field_map
from target_mktdyn_merge.core.policies import PolicySettingError, SyncPolicy
from target_mktdyn_merge.sync.alerts import AlertSettings
from target_mktdyn_merge.sync.reconcile import ReconcileBounds
from target_mktdyn_merge.sync.write_guards import WriteGuards

RequiredLevels = Literal["none", "create", "always"]
"""When Dynamics' ApplicationRequired columns are enforced before a write (docs/architecture.md §6)."""
REQUIRED_LEVELS: tuple[RequiredLevels, ...] = get_args(RequiredLevels)
_N = TypeVar("_N", int, float)


@dataclass(frozen=True)
class MergeSettings:
    """What one run of the target is configured to do.

    Attributes:
        store_url: SQLAlchemy URL of the store (``None``: the default SQLite file).
        merge: Merge after staging (false: the staging-only leg of a job).
        dry_run: Plan and log everything, write nothing.
        lock_wait: Wait for another run's write lock (false: exit at once).
        lock_timeout_seconds: How long to wait for it.
        field_map: The fields paired per entity.
        policy: The create/delete policies.
        sync_filter_field: The Dynamics column that admits a row to the sync ('' = every row).
        enforce_required_levels: When ApplicationRequired columns are checked before a write.
        marketo_activity_type: The custom activity type posted per outcome ('' = none).
        max_record_failures: Record-level failures after which the run fails.
        reconcile: The bounds on key reconciliation.
        dynamics_batch_size: Operations per Dataverse ``$batch``.
        alerts: Where alerts go and when.
        guards: The bounds of the write phase (creates, change share, link-only).
        activity_retention_days: Age after which ``unchanged`` activities are deleted (0: never).
        metadata_max_age_minutes: How long field metadata kept in the store is reused (0: read every run).
        connections: The ``marketo_*``/``dynamics_*`` connection settings, read when a client is needed.
    """

    store_url: str | None
    merge: bool
    dry_run: bool
    lock_wait: bool
    lock_timeout_seconds: float
    field_map: FieldMap
    policy: SyncPolicy
    sync_filter_field: str | None
    enforce_required_levels: RequiredLevels
    marketo_activity_type: str
    max_record_failures: int
    reconcile: ReconcileBounds
    dynamics_batch_size: int
    alerts: AlertSettings
    guards: WriteGuards
    activity_retention_days: int
    metadata_max_age_minutes: int
    connections: Mapping[str, Any]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MergeSettings:
        """The settings of a config the SDK validated and completed with the schema's defaults.

        Raises:
            ConfigurationError: Naming the first setting that is missing or cannot be used.
        """
        try:
            field_map = parse_field_map(config.get("field_map") or {})
        except ValueError as exc:
            raise ConfigurationError("field_map", str(exc)) from exc
        try:
            policy = SyncPolicy.from_config(config)
        except PolicySettingError as exc:
            raise ConfigurationError(exc.setting, str(exc)) from exc
        levels = _required(config, "enforce_required_levels")
        if levels not in REQUIRED_LEVELS:
            raise ConfigurationError("enforce_required_levels", f"{levels!r} is not one of none, create, always")
        return cls(
            store_url=str(config.get("store_url") or "").strip() or None,
            merge=bool(_required(config, "merge")),
            dry_run=bool(_required(config, "dry_run")),
            lock_wait=bool(_required(config, "lock_wait")),
            lock_timeout_seconds=_number(config, "lock_timeout_seconds", float),
            field_map=field_map,
            policy=policy,
            sync_filter_field=str(config.get("sync_filter_field") or "") or None,
            enforce_required_levels=levels,
            marketo_activity_type=str(config.get("marketo_activity_type") or ""),
            max_record_failures=_number(config, "max_record_failures", int),
            reconcile=ReconcileBounds(
                _number(config, "max_reconcile_deletes", int), _number(config, "max_reconcile_share", float)
            ),
            dynamics_batch_size=_number(config, "dynamics_batch_size", int),
            alerts=AlertSettings(
                str(config.get("alert_webhook_url") or "").strip(),
                _number(config, "alert_record_failures", int),
                _number(config, "alert_pending_runs", int),
            ),
            guards=WriteGuards(
                _number(config, "max_creates_in_marketo", int),
                _number(config, "max_creates_in_dynamics", int),
                _number(config, "max_change_share", float),
                _flag(config, "allow_mass_change"),
                _flag(config, "link_only"),
            ),
            activity_retention_days=_number(config, "activity_retention_days", int),
            metadata_max_age_minutes=_number(config, "metadata_max_age_minutes", int),
            connections=MappingProxyType({k: v for k, v in config.items() if k.startswith(("marketo_", "dynamics_"))}),
        )

    def marketo_connection(self) -> MarketoConnection:
        """The Marketo connection the target writes through (validated when first needed)."""
        return MarketoConnection.from_config(dict(self.connections), "marketo_")

    def dynamics_connection(self) -> DataverseConnection:
        """The Dataverse connection the target writes through (validated when first needed)."""
        return DataverseConnection.from_config(dict(self.connections), "dynamics_")


def _required(config: Mapping[str, Any], name: str) -> Any:
    """A setting the schema gives a default, so a config without it was not completed by the plugin."""
    value = config.get(name)
    if value is None:
        raise ConfigurationError(name, "missing (the settings schema gives it a default: build settings through it)")
    return value


def _flag(config: Mapping[str, Any], name: str) -> bool:
    """A boolean setting; the strings an environment variable gives ("true", "false", "1", "0") too."""
    value = _required(config, name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _number(config: Mapping[str, Any], name: str, kind: type[_N]) -> _N:
    """A numeric setting; a string from the environment (Meltano passes numbers so) is converted."""
    value = _required(config, name)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(name, f"expected a number, got {value!r}") from exc
