"""The tap end to end through its CLI: deltas, deletes, expired tokens, the modifiedon path, faults, auth."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection

from tests.tap_dynamics.helpers import run_tap, tap_config

LEADS, CONTACTS = "dynamics_leads", "dynamics_contacts"


@pytest.fixture
def fresh(make_sandbox: Any) -> Iterator[tuple[dict[str, Any], SandboxAdmin]]:
    sandbox = make_sandbox(persons=60, dynamics_only=10)
    admin = SandboxAdmin(sandbox.info)
    yield sandbox.info, admin
    admin.close()


def test_delta_run_returns_exactly_what_changed(fresh: tuple[dict[str, Any], SandboxAdmin], tmp_path: Path) -> None:
    info, admin = fresh
    config = tap_config(info)
    first = run_tap(tmp_path / "1", config)
    assert first.returncode == 0, first.stderr
    leads, contacts = sorted(first.ids(LEADS, "leadid")), sorted(first.ids(CONTACTS, "contactid"))
    assert leads
    assert contacts
    assert all(record["odata_etag"] for record in first.records[LEADS])
    assert first.state["bookmarks"][LEADS]["delta_link"]

    edited, deleted = leads[0], contacts[0]
    admin.dynamics.edit("lead", edited, {"jobtitle": "Chief Delta Officer"})
    admin.dynamics.delete("contact", deleted)
    with DataverseClient(DataverseConnection.from_config(config)) as client:
        created = client.create(
            "leads", {"lastname": "Delta", "subject": "New since last run", "emailaddress1": "delta.new@example.com"}
        )

    second = run_tap(tmp_path / "2", config, state=first.state)
    assert second.returncode == 0, second.stderr
    assert second.ids(LEADS, "leadid") == {edited, created["leadid"]}
    changed = {r["leadid"]: r for r in second.records[LEADS]}
    assert changed[edited]["jobtitle"] == "Chief Delta Officer"
    assert changed[created["leadid"]]["odata_etag"] == created["@odata.etag"]
    [tombstone] = second.records[CONTACTS]
    assert tombstone["contactid"] == deleted
    assert tombstone["_sdc_deleted_at"]
    assert tombstone["modifiedon"] == tombstone["_sdc_deleted_at"]
    others = {k: v for k, v in tombstone.items() if k not in ("contactid", "_sdc_deleted_at", "modifiedon")}
    assert others
    assert all(value is None for value in others.values())

    third = run_tap(tmp_path / "3", config, state=second.state)
    assert third.returncode == 0, third.stderr
    assert third.records == {}


def test_expired_delta_token_means_a_loud_full_resync(
    fresh: tuple[dict[str, Any], SandboxAdmin], tmp_path: Path
) -> None:
    info, admin = fresh
    config = tap_config(info)
    first = run_tap(tmp_path / "1", config)
    assert first.returncode == 0, first.stderr
    ttl_days = float(admin.dynamics.config().get("delta_token_ttl_days", 7))
    admin.dynamics.advance_clock((ttl_days + 1) * 86400)
    second = run_tap(tmp_path / "2", config, state=first.state)
    assert second.returncode == 0, second.stderr
    assert "DELTA TOKEN EXPIRED" in second.stderr
    assert second.ids(LEADS, "leadid") == first.ids(LEADS, "leadid")
    assert second.ids(CONTACTS, "contactid") == first.ids(CONTACTS, "contactid")
    assert second.state["bookmarks"][LEADS]["delta_link"] != first.state["bookmarks"][LEADS]["delta_link"]


@pytest.mark.parametrize("switch", ["setting", "table"])
def test_modifiedon_bookmark_without_change_tracking(
    fresh: tuple[dict[str, Any], SandboxAdmin], tmp_path: Path, switch: str
) -> None:
    info, admin = fresh
    if switch == "setting":
        config = tap_config(info, change_tracking=False)
    else:
        admin.dynamics.config(change_tracking={"lead": False, "contact": False})
        config = tap_config(info)
    first = run_tap(tmp_path / "1", config)
    assert first.returncode == 0, first.stderr
    stamps = [record["modifiedon"] for record in first.records[LEADS]]
    assert stamps == sorted(stamps)
    assert "delta_link" not in first.state["bookmarks"][LEADS]
    assert first.state["bookmarks"][LEADS]["replication_key_value"] == stamps[-1]

    unchanged = run_tap(tmp_path / "2", config, state=first.state)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.records == {}, "rows at the bookmark second were sent again"

    edited = sorted(first.ids(CONTACTS, "contactid"))[0]
    admin.dynamics.edit("contact", edited, {"jobtitle": "Bookmark Tester"})
    second = run_tap(tmp_path / "3", config, state=unchanged.state)
    assert second.returncode == 0, second.stderr
    assert second.ids(CONTACTS, "contactid") == {edited}
    assert LEADS not in second.records


def test_rate_limits_and_outages_are_survived(fresh: tuple[dict[str, Any], SandboxAdmin], tmp_path: Path) -> None:
    info, admin = fresh
    config = tap_config(info)
    clean = run_tap(tmp_path / "clean", config)
    assert clean.returncode == 0, clean.stderr
    admin.dynamics.faults("dynamics.429=0.25,dynamics.503=0.2")
    admin.dynamics.reset_stats()
    faulty = run_tap(tmp_path / "faulty", config)
    admin.dynamics.faults("")
    assert faulty.returncode == 0, faulty.stderr
    assert "HTTP 429" in faulty.stderr
    assert "HTTP 503" in faulty.stderr
    assert faulty.ids(LEADS, "leadid") == clean.ids(LEADS, "leadid")
    assert faulty.ids(CONTACTS, "contactid") == clean.ids(CONTACTS, "contactid")


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"client_secret": "wrong-secret-value"}, "client_secret"),
        ({"tenant_id": str(uuid.uuid4())}, "tenant_id"),
    ],
)
def test_bad_credentials_fail_naming_the_setting(
    sandbox_info: dict[str, Any], tmp_path: Path, override: dict[str, str], setting: str
) -> None:
    run = run_tap(tmp_path, tap_config(sandbox_info, **override))
    assert run.returncode != 0
    assert f"setting '{setting}'" in run.stderr
    assert "wrong-secret-value" not in run.stderr


def test_wrong_password_names_the_setting(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    run = run_tap(tmp_path, tap_config(sandbox_info, "password", password="not-the-password"))
    assert run.returncode != 0
    assert "setting 'password'" in run.stderr
    assert "not-the-password" not in run.stderr


def test_secrets_never_logged_even_at_debug(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    for flow in ("client_credentials", "password"):
        run = run_tap(tmp_path / flow, tap_config(sandbox_info, flow), env={"LOGLEVEL": "DEBUG"})
        assert run.returncode == 0, run.stderr
        assert "DEBUG" in run.stderr
        assert sandbox_info["dynamics_client_secret"] not in run.stderr
        assert sandbox_info["dynamics_password"] not in run.stderr


def test_selection_becomes_select_and_automatic_fields_stay(
    sandbox_info: dict[str, Any], sandbox_admin: SandboxAdmin, tmp_path: Path
) -> None:
    config = tap_config(sandbox_info)
    discovered = run_tap(tmp_path / "d", config, discover=True)
    assert discovered.returncode == 0, discovered.stderr
    catalog: dict[str, Any] = discovered.schemas
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            crumb = item["breadcrumb"]
            if not crumb:
                item["metadata"]["selected"] = entry["tap_stream_id"] == LEADS
            else:
                item["metadata"]["selected"] = crumb[-1] == "firstname"
                if crumb[-1] == "emailaddress1":
                    item["metadata"]["inclusion"] = "available"  # a user's catalog cannot drop it
                    item["metadata"]["selected"] = False
    sandbox_admin.dynamics.reset_stats()
    run = run_tap(tmp_path / "s", config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert sandbox_admin.dynamics.stats()["requests_by_kind"]["metadata"] == 1  # both tables, one request
    assert set(run.records) == {LEADS}
    keys = set().union(*(record.keys() for record in run.records[LEADS]))
    assert keys == {
        "leadid",
        "firstname",
        "modifiedon",
        "emailaddress1",
        "odata_etag",
        "statecode",
        "new_synctomkto",
        "_sdc_deleted_at",
    }
