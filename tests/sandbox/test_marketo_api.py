"""The Marketo half over raw HTTP: envelope conventions, identity, leads.json reads and writes, admin edits."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.marketo.testing import MarketoHttp
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from mktdyn_sandbox.testing import SESSION_SEED


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sandbox = Sandbox(
        SandboxOptions(
            directory=tmp_path_factory.mktemp("marketo-api"), limits=False, export_delay=0.05, **SESSION_SEED
        )
    )
    yield sandbox.start()
    sandbox.stop()


@pytest.fixture(scope="module")
def api(info: dict[str, Any]) -> Iterator[MarketoHttp]:
    client = MarketoHttp(info)
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin(info: dict[str, Any]) -> Iterator[SandboxAdmin]:
    client = SandboxAdmin(info)
    yield client
    client.close()


def sync(api: MarketoHttp, records: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    body = api.post("/rest/v1/leads.json", {"input": records, **options})
    assert body["success"] is True, body
    result: list[dict[str, Any]] = body["result"]
    return result


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    assert body["success"] is False
    return body["errors"][0]["code"], body["errors"][0]["message"]


# -- identity and envelope ------------------------------------------------------------------------
def test_identity_get_and_post_return_the_same_token_with_less_time(api: MarketoHttp, admin: SandboxAdmin) -> None:
    first = api.identity("GET").json()
    assert set(first) == {"access_token", "token_type", "expires_in", "scope"}
    assert re.fullmatch(r"[0-9a-f-]{36}:ab", first["access_token"])
    assert first["token_type"] == "bearer"
    admin.marketo.advance_clock(5)
    second = api.identity("POST", form=True)
    assert second.headers["Cache-Control"] == "no-store"
    assert second.json()["access_token"] == first["access_token"]
    assert second.json()["expires_in"] <= first["expires_in"] - 5
    assert api.identity("POST").json()["access_token"] == first["access_token"]
    refused = api.identity(secret="wrong")
    assert refused.status_code == 401
    assert refused.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_envelope_shape_and_content_type(api: MarketoHttp) -> None:
    response = api.request("GET", "/rest/v1/leads.json", params={"filterType": "id", "filterValues": "1"})
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", body["requestId"])
    assert set(body) == {"requestId", "result", "success"}  # empty errors/warnings and paging keys omitted


def test_tokens_in_header_and_legacy_parameter(api: MarketoHttp, admin: SandboxAdmin) -> None:
    path = "/rest/v1/lead/1.json"
    legacy = api.session.get(f"{api.base_url}{path}", params={"access_token": api.authenticate()}, timeout=30)
    assert legacy.json()["success"] is True
    unknown = api.session.get(f"{api.base_url}{path}", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert error_of(unknown.json()) == ("601", "Access token invalid")
    admin.marketo.config(reject_legacy_token=True)
    try:
        refused = api.session.get(f"{api.base_url}{path}", params={"access_token": api.token}, timeout=30)
        assert error_of(refused.json())[0] == "601"
        assert api.get(path)["success"] is True
    finally:
        admin.marketo.config(reject_legacy_token=False)


def test_method_tunnelling_list_forms_and_unknown_params(api: MarketoHttp) -> None:
    form = api.request(
        "POST",
        "/rest/v1/leads.json",
        data={
            "_method": "GET",
            "filterType": "id",
            "filterValues": "1,2",
            "fields": ["email", "title"],
            "unknownParam": "x",
        },
    )
    assert [lead["id"] for lead in form.json()["result"]] == [1, 2]
    assert set(form.json()["result"][0]) == {"id", "email", "title"}
    query = api.request(
        "POST", "/rest/v1/leads.json?_method=GET", data={"filterType": "id", "filterValues": ["3", "4"]}
    )
    assert [lead["id"] for lead in query.json()["result"]] == [3, 4]
    lists = api.request("POST", "/rest/v1/lists.json?_method=GET", data={"batchSize": "1"}).json()
    assert len(lists["result"]) == 1
    assert lists["nextPageToken"]


def test_gateway_and_request_errors(api: MarketoHttp) -> None:
    long_uri = api.request("GET", "/rest/v1/leads.json", params={"filterType": "id", "filterValues": "1" * 9000})
    assert long_uri.status_code == 414
    big_body = api.request(
        "POST", "/rest/v1/leads.json", data=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert big_body.status_code == 413
    assert error_of(api.get("/rest/v1/nothing.json")) == ("610", "Requested resource not found")
    bad_json = api.request("POST", "/rest/v1/leads.json", data=b"{", headers={"Content-Type": "application/json"})
    assert error_of(bad_json.json())[0] == "609"
    wrong_type = api.request(
        "POST", "/rest/v1/leads.json", data=b'{"input":[]}', headers={"Content-Type": "text/plain"}
    )
    assert error_of(wrong_type.json())[0] == "612"
    assert error_of(api.get("/rest/v1/leads.json", filterType="firstName", filterValues="Ada"))[0] == "1011"
    too_many = ",".join(str(i) for i in range(1, 302))
    assert error_of(api.get("/rest/v1/leads.json", filterType="id", filterValues=too_many))[0] == "1003"
    assert error_of(api.get("/rest/v1/leads.json", filterType="id", filterValues="1", batchSize=301))[0] == "1003"
    assert error_of(api.get("/rest/v1/leads.json", filterType="id", filterValues="1", fields="nope"))[0] == "1006"


# -- reads ----------------------------------------------------------------------------------------
def test_paging_token_only_while_more_pages(api: MarketoHttp) -> None:
    ids = ",".join(str(i) for i in range(1, 8))
    first = api.get("/rest/v1/leads.json", filterType="id", filterValues=ids, batchSize=5)
    assert len(first["result"]) == 5
    assert first["moreResult"] is True
    second = api.get(
        "/rest/v1/leads.json", filterType="id", filterValues=ids, batchSize=5, nextPageToken=first["nextPageToken"]
    )
    assert [lead["id"] for lead in second["result"]] == [6, 7]
    assert "nextPageToken" not in second
    none = api.get("/rest/v1/leads.json", filterType="email", filterValues="nobody@nowhere.example")
    assert none["result"] == []


def test_more_than_a_thousand_matches_is_1003(api: MarketoHttp) -> None:
    for _ in range(4):
        results = sync(
            api,
            [{"email": f"bulk{i}@dup.example", "dynamicsLeadId": "shared-id"} for i in range(300)],
            action="createDuplicate",
        )
        assert {r["status"] for r in results} == {"created"}
    body = api.get("/rest/v1/leads.json", filterType="dynamicsLeadId", filterValues="shared-id")
    assert error_of(body) == ("1003", "Too many results match the filter")


# -- writes ---------------------------------------------------------------------------------------
def test_sync_leads_record_outcomes(api: MarketoHttp) -> None:
    known = api.get("/rest/v1/lead/10.json", fields="email,company,createdAt")["result"][0]
    sync(api, [{"email": "twin@dup.example"}, {"email": "TWIN@dup.example"}], action="createDuplicate")
    results = sync(
        api,
        [
            {"id": 10, "email": "x@y.example"},
            {"email": "twin@dup.example", "title": "x"},
            {"email": "new.one@example.com", "favouriteColour": "blue"},
            {"email": "jürgen@example.com"},
            {"email": "long@example.com", "dynamicsLeadId": "x" * 37},
            {"email": known["email"], "createdAt": "2001-01-01T00:00:00Z", "company": "Ignored Inc", "title": "Kept"},
            {"firstName": "No Email"},
            {"email": "bad.score@example.com", "leadScore": "lots"},
        ],
    )
    assert results[0]["status"] == "created"
    assert results[0]["id"] != 10
    assert results[1]["reasons"][0]["code"] == "1007"
    assert results[2]["reasons"] == [{"code": "1006", "message": "Field 'favouriteColour' not found"}]
    assert results[3]["reasons"][0]["code"] == "1003"
    assert "'email'" in results[3]["reasons"][0]["message"]
    assert results[4]["reasons"][0]["code"] == "1003"
    assert "dynamicsLeadId" in results[4]["reasons"][0]["message"]
    assert results[5]["status"] == "updated"
    assert results[6]["reasons"][0]["code"] == "1003"
    assert results[7]["reasons"][0]["code"] == "1001"
    stored = api.get("/rest/v1/lead/10.json", fields="email,company,title,createdAt")["result"][0]
    assert stored["createdAt"] == known["createdAt"]
    assert stored["company"] == known["company"]  # company fields are not writable through leads.json
    assert stored["title"] == "Kept"

    assert sync(api, [{"email": known["email"]}], action="createOnly")[0]["reasons"][0]["code"] == "1005"
    missing = sync(api, [{"id": 987654, "title": "x"}], action="updateOnly", lookupField="id")
    assert missing[0] == {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}
    by_id = sync(api, [{"id": 11, "title": "Updated By Id"}], action="updateOnly", lookupField="id")
    assert by_id == [{"id": 11, "status": "updated"}]
    body = api.post("/rest/v1/leads.json", {"input": [{"id": 11}], "action": "createOrUpdate", "lookupField": "id"})
    assert error_of(body)[0] == "1003"
    too_many = api.post("/rest/v1/leads.json", {"input": [{"email": f"{i}@x.example"} for i in range(301)]})
    assert error_of(too_many)[0] == "1003"


def test_delete_both_forms(api: MarketoHttp) -> None:
    created = sync(api, [{"email": "gone1@example.com"}, {"email": "gone2@example.com"}], action="createOnly")
    first, second = created[0]["id"], created[1]["id"]
    body = api.post("/rest/v1/leads/delete.json", {"input": [{"id": first}, {"id": 999999}]})
    assert body["result"] == [
        {"id": first, "status": "deleted"},
        {"id": 999999, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
    ]
    deleted = api.request("DELETE", "/rest/v1/leads.json", json={"input": [{"id": second}]}).json()
    assert deleted["result"] == [{"id": second, "status": "deleted"}]


# -- admin edits ----------------------------------------------------------------------------------
def test_custom_field_ui_edit_moves_changed_at_but_not_updated_at(api: MarketoHttp, admin: SandboxAdmin) -> None:
    before = admin.marketo.record("person", 20)
    assert before is not None
    admin.marketo.advance_clock(2)
    after = admin.marketo.edit("person", 20, {"syncToDynamics": not before["syncToDynamics"]})
    assert after["updatedAt"] == before["updatedAt"]
    assert after["_sandbox_changed_at"] > before["_sandbox_changed_at"]
    admin.marketo.advance_clock(2)
    standard = admin.marketo.edit("person", 20, {"title": "Head of Sync"})
    assert standard["updatedAt"] > before["updatedAt"]
    assert standard["_sandbox_changed_at"] > after["_sandbox_changed_at"]
    token = api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2020-01-01")["nextPageToken"]
    changes = api.get(
        "/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="title,syncToDynamics", leadIds="20"
    )
    mine = [c for c in changes["result"] if c["activityTypeId"] == 13]
    assert [c["fields"][0]["name"] for c in mine] == ["syncToDynamics", "title"]
    assert {"name": "Reason", "value": "Changed by user"} in mine[1]["attributes"]
    assert mine[1]["fields"][0]["newValue"] == "Head of Sync"
    assert admin.marketo.delete("person", 21)["deleted"] is True
    assert admin.marketo.record("person", 21) is None


# -- activities and other endpoints ---------------------------------------------------------------
def test_activity_feed_conventions(api: MarketoHttp) -> None:
    token = api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2015-10-06")["nextPageToken"]
    iso_token = api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2015-10-06T00:00:00+00:00")
    assert iso_token["nextPageToken"] == token
    page = api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds=["12", "13"], batchSize=3)
    assert len(page["result"]) == 3
    assert page["moreResult"] is True
    assert page["nextPageToken"] != token
    assert all(item["activityDate"].endswith("Z") for item in page["result"])
    future = api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2099-01-01")["nextPageToken"]
    empty = api.get("/rest/v1/activities/deletedleads.json", nextPageToken=future)
    assert empty["moreResult"] is False
    assert empty["nextPageToken"] == future
    assert "result" not in empty
    eleven = ",".join(str(i) for i in range(1, 12))
    assert error_of(api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds=eleven))[0] == "1003"
    assert error_of(api.get("/rest/v1/activities/leadchanges.json", nextPageToken=token))[0] == "1003"
    types = {t["id"] for t in api.get("/rest/v1/activities/types.json")["result"]}
    assert {1, 2, 12, 13, 37} <= types


def test_usage_lists_campaigns_and_programs(api: MarketoHttp) -> None:
    usage = api.get("/rest/v1/stats/usage.json")["result"][0]
    assert usage["total"] > 0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", usage["date"])
    assert {c["name"] for c in api.get("/rest/v1/campaigns.json")["result"]} >= {"Sync Person to Microsoft"}
    members = api.get("/rest/v1/list/1001/leads.json", batchSize=20)
    assert len(members["result"]) == 20
    assert "nextPageToken" in members
    programs = api.get("/rest/asset/v1/programs.json", maxReturn=200)
    assert programs["errors"] == []
    assert programs["result"]
    past_end = api.get("/rest/asset/v1/programs.json", maxReturn=200, offset=200)
    assert "result" not in past_end
    assert past_end["warnings"] == ["No assets found for the given search criteria."]


def test_custom_activity_type_limits(make_sandbox: Callable[..., Sandbox]) -> None:
    api = MarketoHttp(make_sandbox().info)
    base = "/rest/v1/activities/external"

    def create_type(name: str) -> dict[str, Any]:
        return api.post(
            f"{base}/type.json",
            {
                "apiName": name,
                "name": name,
                "triggerName": f"Has {name}",
                "filterName": f"Had {name}",
                "primaryAttribute": {"apiName": "runId", "name": "Run Id"},
            },
        )

    assert [create_type(f"type{i}")["result"][0]["status"] for i in range(10)] == ["draft"] * 10
    assert error_of(create_type("type10"))[0] == "1027"
    assert error_of(create_type("type0"))[0] == "1003"  # duplicate apiName
    attributes = [{"apiName": f"a{i}", "name": f"A {i}", "dataType": "string"} for i in range(20)]
    created = api.post(f"{base}/type/type0/attributes/create.json", {"attributes": attributes})
    assert len(created["result"][0]["attributes"]) == 20
    extra = api.post(f"{base}/type/type0/attributes/create.json", {"attributes": [{"apiName": "z", "name": "Z"}]})
    assert error_of(extra)[0] == "1028"
    assert api.post(f"{base}/type/type0/approve.json")["result"][0]["status"] == "approved"
    draft = api.post(f"{base}/type/type0/attributes/delete.json", {"attributes": [{"apiName": "a0"}]})
    assert draft["result"][0]["status"] == "approved with draft"
    assert api.post(f"{base}/type/type0/discardDraft.json")["result"][0]["status"] == "approved"
    unapproved = api.post(
        f"{base}.json",
        {
            "input": [
                {
                    "leadId": 1,
                    "activityDate": "2026-01-01T00:00:00Z",
                    "activityTypeId": 100002,
                    "primaryAttributeValue": "x",
                    "attributes": [],
                }
            ]
        },
    )
    assert unapproved["result"][0]["status"] == "skipped"
    assert api.post(f"{base}/type/type1/delete.json")["success"] is True
    assert error_of(api.get(f"{base}/type/type1/describe.json"))[0] == "1013"
    api.close()


def test_ignored_on_write_makes_leads_json_answer_updated_but_keep_the_value(
    api: MarketoHttp, admin: SandboxAdmin
) -> None:
    before = api.get("/rest/v1/lead/11.json", fields="title,city")["result"][0]
    admin.marketo.config(ignored_on_write=["title"])
    try:
        [result] = sync(
            api, [{"id": 11, "title": "Never Stored", "city": "Stored"}], action="updateOnly", lookupField="id"
        )
        assert result["status"] == "updated"
        stored = api.get("/rest/v1/lead/11.json", fields="title,city")["result"][0]
        assert (stored["title"], stored["city"]) == (before["title"], "Stored")
    finally:
        admin.marketo.config(ignored_on_write=[])
    sync(api, [{"id": 11, "title": "Stored Now"}], action="updateOnly", lookupField="id")
    assert api.get("/rest/v1/lead/11.json", fields="title")["result"][0]["title"] == "Stored Now"
