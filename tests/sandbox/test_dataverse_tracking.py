"""Change tracking: snapshot, delta links, deletions, and the documented refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from tests.sandbox.test_dataverse_helpers import Api, error_code

TRACK = {"Prefer": "odata.track-changes,odata.maxpagesize=7"}


@pytest.fixture
def api(make_sandbox: Callable[..., Sandbox]) -> Api:
    return Api(make_sandbox(persons=40, dynamics_only=10).info)


def _full_read(api: Api) -> tuple[list[dict[str, object]], str]:
    response = api.get("leads", params={"$select": "lastname,emailaddress1"}, headers=TRACK)
    assert response.headers["Preference-Applied"].startswith("odata.track-changes")
    body = response.json()
    rows = list(body["value"])
    while "@odata.nextLink" in body:
        assert "@odata.deltaLink" not in body  # the deltaLink comes on the last page only
        body = api.get(body["@odata.nextLink"], headers=TRACK).json()
        rows += body["value"]
    return rows, str(body["@odata.deltaLink"])


def _delta(api: Api, link: str) -> tuple[list[dict[str, object]], str]:
    body = api.get(link, headers={"Prefer": "odata.maxpagesize=2"}).json()
    rows = list(body["value"])
    while "@odata.nextLink" in body:
        body = api.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"}).json()
        rows += body["value"]
    return rows, str(body["@odata.deltaLink"])


def test_delta_returns_exactly_the_changes(api: Api) -> None:
    rows, delta_link = _full_read(api)
    ids = [str(row["leadid"]) for row in rows]
    assert len(ids) == len(set(ids)) > 7
    assert "$select=lastname,emailaddress1" in delta_link
    assert "$deltatoken=" in delta_link
    nothing, delta_link = _delta(api, delta_link)
    assert nothing == []

    created = api.create("leads", {"lastname": "New", "emailaddress1": "new@example.com"})
    api.patch(f"leads({ids[0]})", json={"lastname": "Changed"}, headers={"If-Match": "*"})
    SandboxAdmin(api.info).dynamics.edit("lead", ids[1], {"jobtitle": "UI edit"})
    api.delete(f"leads({ids[2]})")
    SandboxAdmin(api.info).dynamics.delete("lead", ids[3])
    short_lived = api.create("leads", {"lastname": "Gone"})
    api.delete(f"leads({short_lived})")
    api.create("contacts", {"lastname": "Other table"})

    changes, next_link = _delta(api, delta_link)
    upserts = [row for row in changes if "leadid" in row]
    deletions = [row for row in changes if row.get("reason") == "deleted"]
    assert changes == upserts + deletions  # new/updated first, then deletions
    assert [row["leadid"] for row in upserts] == [created, ids[0], ids[1]]  # in the order they changed
    assert upserts[1]["lastname"] == "Changed"
    assert set(upserts[1]) == {"@odata.etag", "lastname", "emailaddress1", "leadid"}
    assert [row["id"] for row in deletions] == [ids[2], ids[3], short_lived]
    assert all(str(row["@odata.context"]).endswith("$metadata#leads/$deletedEntity") for row in deletions)
    again, _ = _delta(api, next_link)
    assert again == []
    # The old link still works (tokens are not single-use) and returns the same changes.
    replay, _ = _delta(api, delta_link)
    assert replay == changes


def test_tracking_refuses_query_options(api: Api) -> None:
    for option, value in (
        ("$filter", "statecode eq 0"),
        ("$orderby", "lastname"),
        ("$top", "5"),
        ("$expand", "parentcontactid"),
    ):
        response = api.get("leads", params={option: value}, headers={"Prefer": "odata.track-changes"})
        assert response.status_code == 400, option
        assert response.json()["error"]["message"] == (
            f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
        )


def test_garbled_and_expired_tokens(api: Api) -> None:
    _, delta_link = _full_read(api)
    base = delta_link.split("$deltatoken=")[0]
    assert api.get(base + "$deltatoken=not-a-token").status_code == 400
    assert api.get(base + "$deltatoken=99999999%2101%2f01%2f2030%2000%3a00%3a00").status_code == 400
    admin = SandboxAdmin(api.info)
    admin.dynamics.advance_clock(6 * 86400)
    api = Api(api.info)  # the old bearer token expired with the clock
    assert api.get(delta_link).status_code == 200
    admin.dynamics.advance_clock(2 * 86400)
    api = Api(api.info)
    expired = api.get(delta_link)
    assert expired.status_code == 400
    assert error_code(expired) == "0x80044352"
    assert expired.json()["error"]["message"] == (
        "Version stamp associated with the client has expired. Please perform a full sync."
    )
    admin.dynamics.config(delta_token_ttl_days=30)
    assert api.get(delta_link).status_code == 200


def test_tracking_switched_off_per_table(api: Api) -> None:
    admin = SandboxAdmin(api.info)
    admin.dynamics.config(change_tracking={"lead": True, "contact": False})
    definition = api.get("EntityDefinitions(LogicalName='contact')", params={"$select": "ChangeTrackingEnabled"})
    assert definition.json()["ChangeTrackingEnabled"] is False
    refused = api.get("contacts", headers={"Prefer": "odata.track-changes"})
    assert refused.status_code == 400
    assert "not enabled" in refused.json()["error"]["message"]
    assert api.get("leads", headers={"Prefer": "odata.track-changes"}).status_code == 200
