"""meltano.yml mirrors every plugin's config_jsonschema and --about, installs every plugin, and wires the job
docs/architecture.md §9.5 describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.meltano_settings import PLUGINS, declared_settings

ROOT = Path(__file__).resolve().parent.parent
PROJECT: dict[str, Any] = yaml.safe_load((ROOT / "meltano.yml").read_text())


def plugin(name: str) -> dict[str, Any]:
    return next(p for group in PROJECT["plugins"].values() for p in group if p["name"] == name)


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_settings_mirror_config_jsonschema(name: str) -> None:
    declared = plugin(name)["settings"]
    expected = declared_settings(PLUGINS[name])
    assert [s["name"] for s in declared] == [s["name"] for s in expected], "run scripts/meltano_settings.py --write"
    assert declared == expected, "run scripts/meltano_settings.py --write"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_secrets_are_sensitive(name: str) -> None:
    schema = PLUGINS[name].config_jsonschema["properties"]
    secret = {k for k, v in schema.items() if v.get("secret")}
    assert secret, f"{name} declares no secret setting"
    sensitive = {s["name"] for s in plugin(name)["settings"] if s.get("sensitive")}
    assert sensitive == secret


def test_secrets_come_from_variables_shared_by_tap_and_target() -> None:
    tap_m, tap_d, target = plugin("tap-marketo-leads"), plugin("tap-dynamics-leads"), plugin("target-mktdyn-merge")
    assert (
        tap_m["config"]["client_secret"] == target["config"]["marketo_client_secret"] == "$MKTDYN_MARKETO_CLIENT_SECRET"
    )
    assert (
        tap_d["config"]["client_secret"]
        == target["config"]["dynamics_client_secret"]
        == "$MKTDYN_DYNAMICS_CLIENT_SECRET"
    )
    text = (ROOT / "meltano.yml").read_text()
    for plugin_def in (tap_m, tap_d, target):
        for key, value in plugin_def.get("config", {}).items():
            if "secret" in key or "password" in key:
                assert str(value).startswith("$"), f"{plugin_def['name']}.{key} must come from a variable"
    assert "sandbox" in [e["name"] for e in PROJECT["environments"]]
    assert "prod" in [e["name"] for e in PROJECT["environments"]]
    assert "send_anonymous_usage_stats: false" in text


def test_sync_job_and_schedule() -> None:
    jobs = {j["name"]: j for j in PROJECT["jobs"]}
    assert jobs["sync"]["tasks"] == ["tap-marketo-leads target-mktdyn-stage tap-dynamics-leads target-mktdyn-merge"]
    stage = plugin("target-mktdyn-stage")
    assert stage["inherit_from"] == "target-mktdyn-merge"
    assert stage["config"]["merge"] is False
    schedule = next(s for s in PROJECT["schedules"] if s["job"] == "sync")
    assert schedule["interval"] == "*/5 * * * *"
    assert "report" in plugin("mktdyn")["commands"]


def test_no_select_pattern_names_a_dotted_property() -> None:
    for name in ("tap-marketo-leads", "tap-dynamics-leads"):
        for pattern in plugin(name).get("select", []):
            _, _, prop = pattern.partition(".")
            assert "." not in prop, f"Meltano splits select patterns on dots: {pattern}"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_capabilities_are_what_about_reports(name: str) -> None:
    """Meltano passes --catalog, --state and stream maps only to plugins declaring the capability."""
    assert plugin(name)["capabilities"] == [str(c.value) for c in PLUGINS[name].capabilities]
    assert "stream-maps" in plugin(name)["capabilities"]
    assert "stream_maps" in [s["name"] for s in plugin(name)["settings"]]


def test_every_plugin_is_installable_from_this_checkout() -> None:
    """`meltano install` installs each plugin by its pip_url (tests/e2e/test_packaging.py runs it)."""
    for group in PROJECT["plugins"].values():
        for definition in group:
            if "inherit_from" in definition:
                assert "pip_url" not in definition, "an inheriting plugin shares its parent's virtualenv"
                continue
            pip_url = definition["pip_url"]
            assert "executable" not in definition or "/" not in definition["executable"], definition["name"]
            for path in pip_url.replace("-e ", "").split():
                assert path.startswith("${MELTANO_PROJECT_ROOT}/"), pip_url
                package = path.removeprefix("${MELTANO_PROJECT_ROOT}/").split("[")[0]
                assert (ROOT / package / "pyproject.toml").exists(), path


def test_no_deprecated_project_version() -> None:
    """Meltano 4 warns on every command that `version: 1` is deprecated."""
    assert "version" not in PROJECT


def test_plugins_install_with_the_uv_backend() -> None:
    """pip (the virtualenv backend) refuses `-e mktdyn-common` next to a plugin requiring it by path; uv takes both."""
    assert PROJECT["venv"]["backend"] == "uv"
