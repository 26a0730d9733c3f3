"""``$batch``: changesets, Content-ID references, continue-on-error and stop-at-first-failure."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from tests.sandbox.test_dataverse_helpers import Api, batch_body, changeset, http_part, response_statuses


@pytest.fixture
def api(make_sandbox: Callable[..., Sandbox]) -> Api:
    return Api(make_sandbox(persons=20, dynamics_only=5).info)


def _send(api: Api, parts: list[str], prefer: str | None = None) -> tuple[int, str, str]:
    boundary = f"batch_{uuid.uuid4()}"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    response = api.post("$batch", data=batch_body(boundary, parts).encode(), headers=headers)
    return response.status_code, response.headers["Content-Type"], response.text


def _count(api: Api, lastname: str) -> int:
    rows = api.get("leads", params={"$filter": f"lastname eq '{lastname}'"}).json()["value"]
    return len(rows)


def test_changeset_references_and_mixed_url_forms(api: Api) -> None:
    contact = api.first_id("contacts")
    parts = [
        changeset(
            [
                http_part("POST", f"{api.base}/leads", {"lastname": "Ref"}, content_id="1"),
                http_part(
                    "PATCH",
                    "$1",
                    {"jobtitle": "Patched via $1", "parentcontactid@odata.bind": f"/contacts({contact})"},
                    content_id="2",
                    headers={"If-Match": "*"},
                ),
            ]
        ),
        http_part("GET", "/api/data/v9.2/leads?$select=lastname&$filter=jobtitle eq 'Patched via $1'"),
        http_part("GET", "contacts?$top=1&$select=lastname"),
    ]
    status, content_type, text = _send(api, parts)
    assert status == 200
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_")
    assert response_statuses(text) == [204, 204, 200, 200]
    assert "changesetresponse_" in text
    assert "Content-ID: 1" in text
    assert '"lastname":"Ref"' in text


def test_failed_changeset_rolls_back(api: Api) -> None:
    admin = SandboxAdmin(api.info)
    admin.dynamics.reset_stats()
    parts = [
        changeset(
            [
                http_part("POST", f"{api.base}/leads", {"lastname": "Atomic"}, content_id="1"),
                http_part("POST", f"{api.base}/leads", {"lastname": "Atomic", "leadsourcecode": 77}, content_id="2"),
            ]
        )
    ]
    status, _, text = _send(api, parts, prefer="odata.continue-on-error")
    assert status == 200
    assert response_statuses(text) == [400]
    assert "0x8004431A" in text
    assert _count(api, "Atomic") == 0
    assert admin.dynamics.stats()["records_written"] == {}


def test_continue_on_error_runs_every_part(api: Api) -> None:
    parts = [
        http_part("POST", f"{api.base}/leads", {"lastname": "Keep1"}),
        http_part("POST", f"{api.base}/leads", {"lastname": "Keep2", "bogus": 1}),
        http_part(
            "PATCH",
            f"{api.base}/leads(00000000-0000-0000-0000-000000000009)",
            {"lastname": "X"},
            headers={"If-Match": "*"},
        ),
        http_part("POST", f"{api.base}/leads", {"lastname": "Keep3"}),
    ]
    status, _, text = _send(api, parts, prefer="odata.continue-on-error")
    assert status == 200
    assert response_statuses(text) == [204, 400, 404, 204]
    assert _count(api, "Keep1") == _count(api, "Keep3") == 1


def test_without_continue_on_error_the_batch_stops(api: Api) -> None:
    parts = [
        http_part("POST", f"{api.base}/leads", {"lastname": "Stop1"}),
        http_part("POST", f"{api.base}/leads", {"lastname": "s" * 51}),
        http_part("POST", f"{api.base}/leads", {"lastname": "Stop3"}),
    ]
    status, content_type, text = _send(api, parts)
    assert status == 400
    assert content_type.startswith("multipart/mixed")
    assert response_statuses(text) == [204, 400]
    assert "exceeded the maximum allowed length of '50'" in text
    assert _count(api, "Stop1") == 1
    assert _count(api, "Stop3") == 0


def test_etag_checks_apply_inside_a_batch(api: Api) -> None:
    lead = api.first_id("leads")
    stale = api.get(f"leads({lead})").json()["@odata.etag"]
    api.patch(f"leads({lead})", json={"jobtitle": "moved"}, headers={"If-Match": "*"})
    _, _, text = _send(
        api,
        [http_part("PATCH", f"{api.base}/leads({lead})", {"jobtitle": "mine"}, headers={"If-Match": stale})],
        prefer="odata.continue-on-error",
    )
    assert response_statuses(text) == [412]
    assert "0x80060882" in text


def test_malformed_and_oversized_batches(api: Api) -> None:
    response = api.post("$batch", data=b"not multipart", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    unknown_ref = [changeset([http_part("PATCH", "$7", {"lastname": "x"})])]
    _, _, text = _send(api, unknown_ref, prefer="odata.continue-on-error")
    assert "Content-ID Reference: '$7' does not exist in the batch context." in text
    get_in_changeset = [changeset([http_part("GET", f"{api.base}/leads")])]
    _, _, text = _send(api, get_in_changeset, prefer="odata.continue-on-error")
    assert response_statuses(text) == [400]
    too_many = [http_part("GET", "leads?$top=1")] * 1001
    status, _, _ = _send(api, too_many)
    assert status == 400
