"""``mktdyn check``: a preflight of the target's settings against both live APIs, in plain words.

It reads the same settings the merging target does (a config file; under Meltano, the target's configuration
as Meltano resolves it; otherwise the environment variables meltano.yml maps onto them), then checks, one line
each: the settings themselves, the store the run uses, that both APIs accept the credentials, that the field
map fits both systems' live metadata, that the columns the policies name exist, and that the custom activity
type is usable. Nothing is written to either system or the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jsonschema  # type: ignore[import-untyped]
import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.ops.project_config import (
    ENVIRONMENT,
    TARGET_PLUGIN,
    config_source,
    environment_setting,
    meltano_config,
    store_url,
)
from target_mktdyn_merge.plugin.settings import CONFIG_SCHEMA, merge_settings
from target_mktdyn_merge.store.connection import StoreError
from target_mktdyn_merge.store.database import open_existing
from target_mktdyn_merge.sync.engine import check_configuration, read_metadata

__all__ = ["ENVIRONMENT", "TARGET_PLUGIN", "config_source", "load_config", "run_check", "store_url"]


def config_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The target's settings from TARGET_MKTDYN_MERGE_<SETTING> (the SDK's names), then the MKTDYN_* variables."""
    config: dict[str, Any] = {}
    properties = CONFIG_SCHEMA["properties"]
    for name, schema in properties.items():
        raw = environment_setting(environ, name)
        if raw == "":
            continue
        types = schema.get("type", "string")
        kinds = {types} if isinstance(types, str) else set(types)
        if kinds & {"object", "array", "integer", "number", "boolean"} and "string" not in kinds:
            try:
                config[name] = json.loads(raw)
            except ValueError:
                config[name] = raw
        else:
            config[name] = raw
    return config


def sa_safe_url(url: str) -> str:
    """``url`` with its password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(an invalid URL)"


@dataclass
class Report:
    """Check lines, written as they are decided."""

    out: TextIO
    failures: int = 0

    def ok(self, what: str) -> None:
        """A check that passed."""
        self.out.write(f"  ok    {what}\n")

    def fail(self, what: str) -> None:
        """A check that failed (the run would fail or misbehave)."""
        self.failures += 1
        self.out.write(f"  FAIL  {what}\n")

    def note(self, what: str) -> None:
        """Something worth knowing that is not a failure."""
        self.out.write(f"  note  {what}\n")

    def step(self, what: str, action: Callable[[], str | None]) -> bool:
        """Run one check; its return value (or exception) becomes the line."""
        try:
            detail = action()
        except MktdynError as exc:
            self.fail(f"{what}: {exc}")
            return False
        self.ok(f"{what}{': ' + detail if detail else ''}")
        return True


def _settings(report: Report, config: dict[str, Any]) -> bool:
    validator = jsonschema.Draft7Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    for error in errors:
        where = ".".join(str(p) for p in error.path) or "(settings)"
        report.fail(f"setting {where}: {error.message}")
    good = not errors
    for system, builder in (("marketo", MarketoConnection), ("dynamics", DataverseConnection)):
        try:
            builder.from_config(config, f"{system}_")
        except MktdynError as exc:
            report.fail(str(exc))
            good = False
    if good:
        report.ok("settings are complete and well-formed")
    return good


def _columns(report: Report, config: dict[str, Any], metadata: SyncMetadata) -> None:
    """The columns and fields the policies name exist, with the right types."""
    try:
        settings = merge_settings(config)
    except MktdynError:
        return  # the settings step already failed, naming the setting
    policy = settings.policy
    wanted = [
        ("sync_filter_field", "dynamics", settings.sync_filter_field),
        ("delete_flag_field_dynamics", "dynamics", policy.delete_flag_field_dynamics),
        ("create_flag_field", "marketo", policy.create_flag_field),
        ("delete_flag_field_marketo", "marketo", policy.delete_flag_field_marketo),
    ]
    for setting, system, name in wanted:
        if not name:
            continue
        if system == "dynamics":
            missing = [e for e in ("lead", "contact") if name not in metadata.dynamics_attributes[e]]
            if missing:
                report.fail(f"{setting}: Dynamics has no column {name!r} on {', '.join(missing)}")
            else:
                report.ok(f"{setting}: column {name!r} exists on lead and contact")
        elif name not in metadata.marketo_fields:
            report.fail(f"{setting}: Marketo has no field {name!r} (create it as a custom boolean field)")
        elif metadata.marketo_fields[name].data_type != "boolean":
            report.fail(f"{setting}: Marketo field {name!r} is {metadata.marketo_fields[name].data_type}, not boolean")
        else:
            report.ok(f"{setting}: Marketo field {name!r} is a boolean")


def run_check(config: dict[str, Any], out: TextIO) -> int:
    """Run every check; return the number of failures."""
    report = Report(out)
    out.write("Settings\n")
    if not _settings(report, config):
        return report.failures
    out.write("Store\n")
    try:
        open_existing(store_url(config)).close()
    except StoreError as exc:  # the run creates or upgrades it; a newer schema fails the run
        if "newer than" in str(exc):
            report.fail(str(exc))
        else:
            report.note(f"{exc}; the next run creates or upgrades it")
    else:
        report.ok(f"store at {sa_safe_url(store_url(config))} is at the current schema")
    marketo = MarketoClient(MarketoConnection.from_config(config, "marketo_"))
    dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
    try:
        out.write("Marketo\n")
        marketo_ok = report.step(
            "credentials accepted and leads/describe.json readable",
            lambda: f"{len(marketo.describe_leads())} person fields",
        )
        out.write("Dynamics\n")
        dynamics_ok = report.step(
            "credentials accepted and lead/contact metadata readable",
            lambda: ", ".join(f"{e}: {len(dynamics.attributes(e))} columns" for e in ("lead", "contact")),
        )
        for entity in ("lead", "contact"):
            if dynamics_ok:
                definition = dynamics.entity_definition(entity)
                if definition.change_tracking_enabled:
                    report.ok(f"change tracking is on for {entity} (deletes are seen)")
                else:
                    report.note(
                        f"change tracking is off for {entity}: the tap falls back to a modifiedon "
                        "bookmark and deletes are found only by a full extraction"
                    )
        if not (marketo_ok and dynamics_ok):
            return report.failures
        metadata = read_metadata(marketo, dynamics)
        out.write("Field map and policies\n")
        report.step("field map fits both systems' metadata", lambda: _field_map(config, metadata))
        _columns(report, config, metadata)
        activity_type = str(config.get("marketo_activity_type") or "")
        out.write("Activity log in Marketo\n")
        if not activity_type:
            report.note("marketo_activity_type is empty: outcomes are not posted to persons' activity logs")
        else:
            report.step(f"custom activity type {activity_type!r}", lambda: _activity_type(marketo, activity_type))
        report.note(
            "write permissions (Marketo 'Read-Write Lead', Dataverse create/write on lead and contact) "
            "are proven by the first write; a refusal is reported per record"
        )
    finally:
        marketo.close()
        dynamics.close()
    return report.failures


def _field_map(config: dict[str, Any], metadata: SyncMetadata) -> str:
    settings = merge_settings(config)
    field_map = settings.field_map
    check_configuration(field_map, settings.policy, metadata)
    return f"{len(field_map.rules('lead'))} lead rules, {len(field_map.rules('contact'))} contact rules"


def _activity_type(marketo: MarketoClient, api_name: str) -> str:
    types = {t.get("apiName"): t for t in marketo.list_custom_activity_types()}
    found = types.get(api_name)
    if found is None:
        return "missing: the first run creates and approves it (needs 'Read-Write Activity Metadata')"
    return f"exists, status {found.get('status')}"


def load_config(path: str | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The target's settings as the run will see them: a JSON file if given, else Meltano's, else the environment.

    Under Meltano (``MELTANO_PROJECT_ROOT`` set, as ``meltano invoke mktdyn ...`` does) the configuration is the
    one Meltano resolves for the target (meltano.yml, the active environment, ``.env``, variables), read with
    ``meltano config print``: checking the environment variables alone would miss a ``field_map`` written in
    meltano.yml. Outside Meltano it is the variables meltano.yml maps (:func:`config_from_environment`).
    """
    environ = environ if environ is not None else os.environ
    if path:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MktdynError(f"config file {path} cannot be read as JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise MktdynError(f"config file {path} is not a JSON object")
        return loaded
    if environ.get("MELTANO_PROJECT_ROOT"):
        return meltano_config(environ)
    return config_from_environment(environ)
