"""The Web API's server-side behaviour: validation codes, filters, ETags, conditional writes, QualifyLead."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.dataverse import entity_api
from mktdyn_sandbox.sandbox import Sandbox

from tests.sandbox.test_dataverse_helpers import Api, error_code


@pytest.fixture
def api(make_sandbox: Callable[..., Sandbox]) -> Api:
    return Api(make_sandbox(persons=40, dynamics_only=10).info)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"lastname": "X", "nickname": "nope"}, "0x80048d19", "An undeclared property 'nickname'"),
        ({"lastname": "X", "leadsourcecode": 99}, "0x8004431A", "The value 99 of 'leadsourcecode'"),
        (
            {"lastname": "X", "statuscode": 4},
            "0x80048408",
            "4 is not a valid status code for state code LeadState.Open",
        ),
        ({"lastname": "X", "ownerid@odata.bind": None}, "0x80040203", "ownerid cannot be set to NULL"),
        (
            {"lastname": "L" * 51},
            "0x80044331",
            "The length of the 'lastname' attribute of the 'lead' entity exceeded the maximum allowed length of '50'.",
        ),
        ({"lastname": 5}, "0x80048d19", "Cannot convert the literal '5' to the expected type 'Edm.String'."),
        (
            {"lastname": "X", "leadsourcecode": "Web"},
            "0x80048d19",
            "Cannot convert the literal 'Web' to the expected type",
        ),
        ({"lastname": "X", "new_lastcontacteddate": "yesterday"}, "0x80048d19", "'Edm.Date'"),
        (
            {"lastname": "X", "_parentcontactid_value": "49b0be2e-d01c-ed11-b83e-000d3a572421"},
            "0x80048d19",
            "Navigation properties",
        ),
        (
            {"lastname": "X", "ParentContactId@odata.bind": "/contacts(49b0be2e-d01c-ed11-b83e-000d3a572421)"},
            "0x80048d19",
            "An undeclared property 'ParentContactId'",
        ),
    ],
)
def test_rejected_writes(sandbox_info: dict[str, object], body: dict[str, object], code: str, fragment: str) -> None:
    response = Api(sandbox_info).post("leads", json=body)  # nothing is written: the shared sandbox will do
    assert response.status_code == 400, response.text
    assert error_code(response) == code
    assert fragment in response.json()["error"]["message"]


def test_system_required_null_is_rejected_but_application_required_is_not(api: Api) -> None:
    lead_id = api.create("leads", {"firstname": "No Last Name, No Subject"})  # ApplicationRequired: not enforced
    response = api.patch(f"leads({lead_id})", json={"statecode": None}, headers={"If-Match": "*"})
    assert response.status_code == 400
    assert "statecode cannot be set to NULL" in response.json()["error"]["message"]


def test_read_only_columns_are_silently_ignored(api: Api) -> None:
    response = api.post(
        "leads",
        json={
            "lastname": "Ro",
            "createdon": "2001-01-01T00:00:00Z",
            "fullname": "Nope",
            "versionnumber": 1,
            "statecode": 2,
        },
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201, response.text
    row = response.json()
    assert row["createdon"] != "2001-01-01T00:00:00Z"
    assert row["fullname"] == "Ro"
    assert row["statecode"] == 0  # statecode is not valid for create
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'


def test_lookup_bind_validates_the_target_and_reads_back(api: Api) -> None:
    contact_id = api.first_id("contacts")
    missing = api.post(
        "leads", json={"lastname": "B", "parentcontactid@odata.bind": "/contacts(00000000-0000-0000-0000-000000000001)"}
    )
    assert missing.status_code == 404
    assert error_code(missing) == "0x80040217"
    lead_id = api.create("leads", {"lastname": "B", "parentcontactid@odata.bind": f"/contacts({contact_id})"})
    row = api.get(
        f"leads({lead_id})",
        params={"$select": "_parentcontactid_value"},
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()
    assert row["_parentcontactid_value"] == contact_id
    assert row["_parentcontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert row["_parentcontactid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "parentcontactid"
    assert row["@odata.context"].endswith("$metadata#leads(_parentcontactid_value)/$entity")


def test_filter_string_literals_are_data_not_syntax(api: Api) -> None:
    tricky = "o'brien+x@example.com"
    injected = "a' or 1 eq 1"
    api.create("contacts", {"lastname": "O'Brien", "emailaddress1": tricky})
    api.create("contacts", {"lastname": injected})
    found = api.get(
        "contacts", params={"$filter": "emailaddress1 eq 'O''Brien+X@example.com'", "$select": "lastname,emailaddress1"}
    ).json()["value"]
    assert [(r["lastname"], r["emailaddress1"]) for r in found] == [("O'Brien", tricky)]
    exact = api.get("contacts", params={"$filter": "lastname eq 'a'' or 1 eq 1'"}).json()["value"]
    assert [r["lastname"] for r in exact] == [injected]
    broken = api.get("contacts", params={"$filter": "lastname eq 'a' or 1 eq 1'"})
    assert broken.status_code == 400
    assert error_code(broken) == "0x80060888"
    percent = api.get("contacts", params={"$filter": "contains(lastname, '%')"}).json()["value"]
    assert percent == []


def test_filter_operators_orderby_top_and_count(api: Api) -> None:
    for index, source in enumerate([8, 8, 3, None]):
        body: dict[str, object] = {"lastname": f"Op{index}", "jobtitle": "Ops"}
        if source is not None:
            body["leadsourcecode"] = source
        api.create("leads", body)

    def names(filter_: str, **params: str) -> list[str]:
        response = api.get("leads", params={"$filter": filter_, "$select": "lastname", **params})
        assert response.status_code == 200, response.text
        return [row["lastname"] for row in response.json()["value"]]

    assert names("jobtitle eq 'Ops' and leadsourcecode eq 8", **{"$orderby": "lastname desc"}) == ["Op1", "Op0"]
    assert names("jobtitle eq 'Ops' and leadsourcecode eq null") == ["Op3"]
    assert names("jobtitle eq 'Ops' and not (leadsourcecode ge 5)", **{"$orderby": "lastname"}) == ["Op2", "Op3"]
    assert names("jobtitle eq 'OPS' and startswith(lastname,'op') and endswith(lastname, '2')") == ["Op2"]
    in_list = "Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=['Op0','Op3'])"
    assert sorted(names(in_list)) == ["Op0", "Op3"]
    assert names("jobtitle eq 'Ops'", **{"$orderby": "leadsourcecode desc,lastname asc", "$top": "3"}) == [
        "Op0",
        "Op1",
        "Op2",
    ]
    counted = api.get("leads", params={"$filter": "jobtitle eq 'Ops'", "$count": "true", "$top": "1"}).json()
    assert counted["@odata.count"] == 4
    assert len(counted["value"]) == 1
    wrong_type = api.get("leads", params={"$filter": "leadsourcecode eq 'Web'"})
    assert wrong_type.status_code == 400
    since = api.get("leads", params={"$filter": "modifiedon gt 2000-01-01T00:00:00.000Z and jobtitle eq 'Ops'"})
    assert len(since.json()["value"]) == 4


def test_paging_with_orderby_is_complete_and_stable(api: Api) -> None:
    seen: list[str] = []
    response = api.get(
        "contacts",
        params={"$select": "lastname", "$orderby": "lastname desc,firstname"},
        headers={"Prefer": "odata.maxpagesize=4"},
    ).json()
    pages = 1
    seen += [row["contactid"] for row in response["value"]]
    while "@odata.nextLink" in response:
        assert response["@odata.nextLink"].startswith(api.base + "/contacts?")
        response = api.get(response["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=4"}).json()
        seen += [row["contactid"] for row in response["value"]]
        pages += 1
    everything = api.get("contacts", params={"$select": "lastname", "$orderby": "lastname desc,firstname"}).json()
    assert seen == [row["contactid"] for row in everything["value"]]
    assert pages > 1
    garbled = api.get("contacts", params={"$skiptoken": "<cookie nonsense>"})
    assert garbled.status_code == 400


def test_single_row_etags_and_conditional_writes(api: Api) -> None:
    lead_id = api.first_id("leads")
    response = api.get(f"leads({lead_id})")
    etag = response.json()["@odata.etag"]
    assert response.headers["ETag"] == etag
    assert api.get(f"leads({lead_id})", headers={"If-None-Match": etag}).status_code == 304
    assert api.patch(f"leads({lead_id})", json={"jobtitle": "A"}, headers={"If-Match": etag}).status_code == 204
    stale = api.patch(f"leads({lead_id})", json={"jobtitle": "B"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert error_code(stale) == "0x80060882"
    assert api.get(f"leads({lead_id})", headers={"If-None-Match": etag}).status_code == 200
    assert api.delete(f"leads({lead_id})", headers={"If-Match": etag}).status_code == 412
    fresh = api.get(f"leads({lead_id})").json()["@odata.etag"]
    assert api.delete(f"leads({lead_id})", headers={"If-Match": fresh}).status_code == 204
    missing = api.get(f"leads({lead_id})")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"lead With Id = {lead_id} Does Not Exist"


def test_patch_upsert_create_only_and_update_only(api: Api) -> None:
    new_id = "6f0e3c1a-0000-4000-8000-00000000abcd"
    only_update = api.patch(f"leads({new_id})", json={"lastname": "U"}, headers={"If-Match": "*"})
    assert only_update.status_code == 404
    created = api.patch(f"leads({new_id})", json={"lastname": "U"}, headers={"Prefer": "return=representation"})
    assert created.status_code == 201
    assert created.json()["leadid"] == new_id
    duplicate = api.patch(f"leads({new_id})", json={"lastname": "V"}, headers={"If-None-Match": "*"})
    assert duplicate.status_code == 412
    assert error_code(duplicate) == "0x80040237"
    updated = api.patch(
        f"leads({new_id})?$select=lastname", json={"lastname": "W"}, headers={"Prefer": "return=representation"}
    )
    assert updated.status_code == 200
    assert updated.json()["lastname"] == "W"
    assert set(updated.json()) == {"@odata.context", "@odata.etag", "lastname", "leadid"}
    plain = api.patch(f"leads({new_id})", json={"lastname": "X"})
    assert plain.status_code == 204
    assert plain.headers["OData-EntityId"].endswith(f"/leads({new_id})")


def test_writes_are_counted(api: Api) -> None:
    admin = SandboxAdmin(api.info)
    admin.dynamics.reset_stats()
    lead_id = api.create("leads", {"lastname": "Counted"})
    api.patch(f"leads({lead_id})", json={"firstname": "C"}, headers={"If-Match": "*"})
    api.delete(f"leads({lead_id})")
    api.post("leads", json={"lastname": "y" * 99})
    assert admin.dynamics.stats()["records_written"] == {"created": 1, "updated": 1, "deleted": 1}


def test_admin_edit_is_a_ui_edit(api: Api) -> None:
    admin = SandboxAdmin(api.info)
    lead_id = api.first_id("leads")
    before = admin.dynamics.record("lead", lead_id)
    assert before is not None
    after = admin.dynamics.edit("lead", lead_id, {"jobtitle": "Edited in UI"})
    assert after["versionnumber"] > before["versionnumber"]
    assert after["jobtitle"] == "Edited in UI"
    with pytest.raises(RuntimeError, match="0x80044331"):
        admin.dynamics.edit("lead", lead_id, {"jobtitle": "t" * 101})
    admin.dynamics.delete("lead", lead_id)
    assert admin.dynamics.record("lead", lead_id) is None


def test_qualify_lead_creates_the_contact(api: Api) -> None:
    lead_id = api.create(
        "leads",
        {
            "firstname": "Q",
            "lastname": "Lead",
            "emailaddress1": "q@example.com",
            "telephone1": "+1 555",
            "subject": "Qualify me",
        },
    )
    response = api.post(
        f"leads({lead_id})/Microsoft.Dynamics.CRM.QualifyLead",
        json={"CreateContact": True, "CreateAccount": False, "CreateOpportunity": False, "Status": 3},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#crmbaseentity")
    [created] = body["value"]
    assert created["@odata.type"] == "#Microsoft.Dynamics.CRM.contact"
    contact = api.get(f"contacts({created['contactid']})").json()
    assert (contact["firstname"], contact["lastname"], contact["emailaddress1"]) == ("Q", "Lead", "q@example.com")
    assert contact["_originatingleadid_value"] == lead_id
    lead = api.get(f"leads({lead_id})", params={"$select": "statecode,statuscode"}).json()
    assert (lead["statecode"], lead["statuscode"]) == (1, 3)
    again = api.post(f"leads({lead_id})/Microsoft.Dynamics.CRM.QualifyLead", json={"CreateContact": True})
    assert again.status_code == 400
    wrong_status = api.create("leads", {"lastname": "S"})
    bad = api.post(
        f"leads({wrong_status})/Microsoft.Dynamics.CRM.QualifyLead", json={"CreateContact": True, "Status": 4}
    )
    assert error_code(bad) == "0x80048408"
    assert api.get("contacts", params={"$filter": f"_originatingleadid_value eq {wrong_status}"}).json()["value"] == []


def test_metadata_endpoints(api: Api) -> None:
    table = api.get(
        "EntityDefinitions(LogicalName='lead')",
        params={
            "$select": "LogicalName,ChangeTrackingEnabled,IsOptimisticConcurrencyEnabled,CanChangeTrackingBeEnabled"
        },
    ).json()
    assert table["ChangeTrackingEnabled"] is True
    assert table["CanChangeTrackingBeEnabled"]["Value"] is True
    strings = api.get(
        "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata",
        params={"$select": "LogicalName,MaxLength"},
    ).json()["value"]
    lengths = {item["LogicalName"]: item["MaxLength"] for item in strings}
    assert lengths["subject"] == 300
    assert lengths["lastname"] == 50
    assert lengths["emailaddress1"] == 100
    no_cast = api.get("EntityDefinitions(LogicalName='lead')/Attributes", params={"$select": "LogicalName,MaxLength"})
    assert no_cast.status_code == 400
    status = api.get(
        "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statuscode')/"
        "Microsoft.Dynamics.CRM.StatusAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet($select=Options),GlobalOptionSet"},
    ).json()
    assert {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]}[3] == 1
    assert status["GlobalOptionSet"] is None
    expanded = api.get(
        "EntityDefinitions",
        params={
            "$filter": "LogicalName eq 'contact'",
            "$select": "LogicalName",
            "$expand": "Attributes($select=LogicalName,AttributeType,RequiredLevel,IsValidForCreate;"
            "$filter=RequiredLevel/Value eq Microsoft.Dynamics.CRM.AttributeRequiredLevel'ApplicationRequired')",
        },
    ).json()["value"]
    assert [a["LogicalName"] for a in expanded[0]["Attributes"]] == ["lastname"]
    lookups = api.get(
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        params={"$select": "LogicalName,Targets"},
    ).json()["value"]
    assert {"LogicalName": "originatingleadid", "Targets": ["lead"]}.items() <= {
        k: v for item in lookups if item["LogicalName"] == "originatingleadid" for k, v in item.items()
    }.items()
    dates = api.get(
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
        params={"$select": "LogicalName,DateTimeBehavior"},
    ).json()["value"]
    assert {d["LogicalName"]: d["DateTimeBehavior"]["Value"] for d in dates}["birthdate"] == "DateOnly"
    virtual = api.get(
        "EntityDefinitions(LogicalName='lead')/Attributes",
        params={"$filter": "AttributeType eq 'Virtual'", "$select": "LogicalName,IsValidForRead"},
    ).json()
    assert virtual["value"][0]["IsValidForRead"] is False
    csdl = api.get("$metadata", params={"annotations": "true"})
    assert csdl.headers["Content-Type"].startswith("application/xml")
    assert 'EntitySet Name="leads"' in csdl.text
    assert "Org.OData.Capabilities.V1.ChangeTracking" in csdl.text


def test_count_segment_answers_a_plain_text_number_capped_like_dataverse(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = api.get("leads", params={"$select": "leadid,jobtitle"}).json()["value"]
    response = api.get("leads/$count")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == str(len(rows))
    title = next(row["jobtitle"] for row in rows if row["jobtitle"])
    titled = sum(1 for row in rows if row["jobtitle"] == title)
    literal = str(title).replace("'", "''")
    assert api.get("leads/$count", params={"$filter": f"jobtitle eq '{literal}'"}).text == str(titled)
    monkeypatch.setattr(entity_api, "COUNT_CAP", 3)  # the cap is 5,000 rows; this sandbox holds fewer
    assert api.get("leads/$count").text == "3"
