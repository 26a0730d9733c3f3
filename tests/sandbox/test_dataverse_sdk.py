"""Microsoft's own Dataverse client (powerplatform-dataverse-client 1.1.0) against the sandbox, unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from tests.sandbox.test_dataverse_helpers import confidential_app


class MsalCredential:
    """A TokenCredential that gets its tokens from the sandbox authority through msal."""

    def __init__(self, info: dict[str, Any]) -> None:
        self._app = confidential_app(info)
        self.scopes_seen: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_seen.extend(scopes)
        result = self._app.acquire_token_for_client(scopes=list(scopes))
        assert "access_token" in result, result
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))


@pytest.fixture
def dynamics(make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sandbox = make_sandbox(persons=60, dynamics_only=10)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.info["ca_bundle"])
    return sandbox


@pytest.fixture
def client(dynamics: Sandbox) -> Iterator[DataverseClient]:
    with DataverseClient(dynamics.info["dynamics_url"], MsalCredential(dynamics.info)) as dataverse:
        yield dataverse


def test_create_update_retrieve_delete(client: DataverseClient, dynamics: Sandbox) -> None:
    lead_id = client.records.create(
        "lead",
        {
            "subject": "Webinar",
            "lastname": "Lovelace",
            "firstname": "Ada",
            "emailaddress1": "ada@example.com",
            "leadsourcecode": "Web",
        },
    )
    stored = SandboxAdmin(dynamics.info).dynamics.record("lead", lead_id)
    assert stored is not None
    assert stored["leadsourcecode"] == 8  # the client resolved the label through the picklist cast endpoint
    assert stored["fullname"] == "Ada Lovelace"
    client.records.update("lead", lead_id, {"firstname": "Augusta", "jobtitle": "Countess"})
    record = client.records.retrieve(
        "lead", lead_id, select=["firstname", "jobtitle", "leadsourcecode"], include_annotations="*"
    )
    assert record is not None
    assert record["firstname"] == "Augusta"
    assert record["jobtitle"] == "Countess"
    assert record["leadsourcecode@OData.Community.Display.V1.FormattedValue"] == "Web"
    client.records.delete("lead", lead_id)
    assert client.records.retrieve("lead", lead_id) is None
    with pytest.raises(HttpError) as raised:
        client.records.update("lead", lead_id, {"firstname": "Ghost"})
    assert raised.value.status_code == 404
    assert raised.value.details["service_error_code"] == "0x80040217"


def test_list_with_filter_and_paging(client: DataverseClient, dynamics: Sandbox) -> None:
    for index in range(7):
        client.records.create("contact", {"lastname": f"Paging{index}", "jobtitle": "Pager"})
    pages = list(
        client.records.list_pages(
            "contact", filter="jobtitle eq 'Pager'", select=["lastname"], orderby=["lastname desc"], page_size=3
        )
    )
    assert [len(page) for page in pages] == [3, 3, 1]
    names = [record["lastname"] for page in pages for record in page]
    assert names == [f"Paging{index}" for index in reversed(range(7))]
    everything = client.records.list("lead", select=["leadid"], page_size=10)
    total = SandboxAdmin(dynamics.info).dynamics.stats()["requests"]
    assert len(list(everything)) > 10
    assert total["dataverse GET collection"] >= 2


def test_create_error_is_the_service_error(client: DataverseClient) -> None:
    with pytest.raises(HttpError) as raised:
        client.records.create("lead", {"lastname": "x" * 51})
    assert raised.value.status_code == 400
    assert raised.value.details["service_error_code"] == "0x80044331"
    assert "maximum allowed length of '50'" in str(raised.value)


def test_upsert_by_alternate_key(client: DataverseClient, dynamics: Sandbox) -> None:
    admin = SandboxAdmin(dynamics.info)
    with pytest.raises(HttpError) as raised:  # no alternate key is defined on a fresh org
        client.records.upsert(
            "contact", [{"alternate_key": {"emailaddress1": "keyed@example.com"}, "record": {"lastname": "Keyed"}}]
        )
    assert raised.value.status_code == 400
    admin.dynamics.config(alternate_keys={"lead": [], "contact": [["emailaddress1"]]})
    client.records.upsert(
        "contact",
        [
            {
                "alternate_key": {"emailaddress1": "keyed@example.com"},
                "record": {"lastname": "Keyed", "jobtitle": "First"},
            }
        ],
    )
    client.records.upsert(
        "contact", [{"alternate_key": {"emailaddress1": "KEYED@example.com"}, "record": {"jobtitle": "Second"}}]
    )
    found = client.records.list(
        "contact", filter="emailaddress1 eq 'keyed@example.com'", select=["lastname", "jobtitle", "emailaddress1"]
    )
    rows = [record.data for record in found]
    assert len(rows) == 1
    assert rows[0]["jobtitle"] == "Second"
    assert rows[0]["emailaddress1"] == "keyed@example.com"
    client.records.upsert(
        "contact",
        [
            {"alternate_key": {"emailaddress1": "keyed@example.com"}, "record": {"jobtitle": "Third"}},
            {"alternate_key": {"emailaddress1": "new.one@example.com"}, "record": {"lastname": "New"}},
        ],
    )
    emails = client.records.list(
        "contact",
        filter="contains(emailaddress1, 'example.com') and (jobtitle eq 'Third' or lastname eq 'New')",
        select=["emailaddress1"],
    )
    assert sorted(record["emailaddress1"] for record in emails) == ["keyed@example.com", "new.one@example.com"]


def test_bulk_create_and_update(client: DataverseClient) -> None:
    ids = client.records.create("lead", [{"lastname": "Bulk1"}, {"lastname": "Bulk2"}, {"lastname": "Bulk3"}])
    assert len(ids) == 3
    client.records.update("lead", ids, {"jobtitle": "Bulk"})
    rows = client.records.list("lead", filter="jobtitle eq 'Bulk'", select=["lastname"])
    assert sorted(record["lastname"] for record in rows) == ["Bulk1", "Bulk2", "Bulk3"]


def test_batch_with_changeset_and_failure(client: DataverseClient) -> None:
    batch = client.batch.new()
    batch.records.create("lead", {"lastname": "BatchA"})
    with batch.changeset() as changes:
        ref = changes.records.create("contact", {"lastname": "BatchB"})
        changes.records.update("contact", ref, {"jobtitle": "Referenced"})
    batch.records.create("lead", {"lastname": "y" * 60})
    batch.records.create("lead", {"lastname": "BatchC"})
    result = batch.execute(continue_on_error=True)
    assert [r.status_code for r in result.responses] == [204, 204, 204, 400, 204]
    assert result.failed[0].error_code == "0x80044331"
    assert len(set(result.entity_ids)) == 3  # the update answers with its OData-EntityId too
    referenced = client.records.list("contact", filter="jobtitle eq 'Referenced'", select=["lastname"])
    assert [record["lastname"] for record in referenced] == ["BatchB"]

    stopping = client.batch.new()
    stopping.records.create("lead", {"lastname": "z" * 60})
    stopping.records.create("lead", {"lastname": "NeverRuns"})
    stopped = stopping.execute()
    assert [r.status_code for r in stopped.responses] == [400]
    assert list(client.records.list("lead", filter="lastname eq 'NeverRuns'")) == []
