"""Service protection limits (429 + Retry-After) and each injected Dataverse fault."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from tests.sandbox.test_dataverse_helpers import Api, batch_body, error_code, http_part


@pytest.fixture
def limited(make_sandbox: Callable[..., Sandbox]) -> Api:
    sandbox = make_sandbox(persons=20, dynamics_only=5, limits=True)
    return Api(sandbox.info)


def test_request_window_gives_429_with_retry_after(limited: Api) -> None:
    admin = SandboxAdmin(limited.info)
    admin.dynamics.config(requests_per_window=5, window_seconds=60)
    statuses = [limited.get("leads", params={"$top": "1"}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = limited.get("leads")
    assert error_code(refused) == "0x80072322"
    assert refused.json()["error"]["message"] == (
        "Number of requests exceeded the limit of 5 over time window of 60 seconds."
    )
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    admin.dynamics.advance_clock(retry_after)
    assert limited.get("leads", params={"$top": "1"}).status_code == 200


def _batch_of_reads(api: Api, count: int) -> str:
    boundary = f"batch_{uuid.uuid4()}"
    response = api.post(
        "$batch",
        data=batch_body(boundary, [http_part("GET", "leads?$top=1")] * count).encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}", "Prefer": "odata.continue-on-error"},
    )
    assert response.status_code == 200
    return response.text


def test_a_batch_is_one_request_to_the_window_by_default(limited: Api) -> None:
    """Reference §6: the operations count toward entitlement (``batch_operations``), the batch toward the window."""
    admin = SandboxAdmin(limited.info)
    admin.dynamics.config(requests_per_window=2, window_seconds=300)
    before = admin.dynamics.stats().get("batch_operations", 0)
    text = _batch_of_reads(limited, 5)
    assert text.count("HTTP/1.1 200") == 5
    assert admin.dynamics.stats()["batch_operations"] - before == 5
    assert limited.get("leads", params={"$top": "1"}).status_code == 200  # the window's second slot
    assert limited.get("leads", params={"$top": "1"}).status_code == 429


def test_batch_operations_count_toward_the_window_in_the_strict_model(limited: Api) -> None:
    SandboxAdmin(limited.info).dynamics.config(requests_per_window=3, window_seconds=300, batch_operations_count=True)
    text = _batch_of_reads(limited, 4)
    assert text.count("HTTP/1.1 200") == 3
    assert text.count("HTTP/1.1 429") == 1


def test_concurrency_limit_refuses_at_once(limited: Api) -> None:
    admin = SandboxAdmin(limited.info)
    admin.dynamics.config(concurrency_limit=2)
    admin.dynamics.faults("dynamics.latency_ms=400")
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        api = Api.__new__(Api)
        api.info, api.base, api.session = limited.info, limited.base, type(limited.session)(limited.info["ca_bundle"])
        api.session.headers.update(limited.session.headers)
        status = api.get("leads", params={"$top": "1"}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admin.dynamics.faults("")
    assert statuses.count(200) >= 2
    assert statuses.count(429) >= 1
    assert sorted(set(statuses)) == [200, 429]


@pytest.fixture
def api(make_sandbox: Callable[..., Sandbox]) -> Api:
    return Api(make_sandbox(persons=20, dynamics_only=5).info)


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"), [("401", 401, None), ("429", 429, "1"), ("500", 500, None), ("503", 503, "1")]
)
def test_injected_faults(api: Api, kind: str, status: int, retry_after: str | None) -> None:
    admin = SandboxAdmin(api.info)
    admin.dynamics.faults(f"dynamics.{kind}=1")
    response = api.get("leads", params={"$top": "1"})
    admin.dynamics.faults("")
    assert response.status_code == status
    assert "code" in response.json()["error"]
    assert response.headers.get("Retry-After") == retry_after
    if kind == "401":
        assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert admin.dynamics.stats()["rejected"][kind] == 1
    assert api.get("leads", params={"$top": "1"}).status_code == 200


def test_injected_412_is_a_real_concurrent_edit(api: Api) -> None:
    admin = SandboxAdmin(api.info)
    lead = api.first_id("leads")
    etag = api.get(f"leads({lead})").json()["@odata.etag"]
    admin.dynamics.faults("dynamics.412=1")
    unconditional = api.patch(f"leads({lead})", json={"jobtitle": "no etag"}, headers={"If-Match": "*"})
    conditional = api.patch(f"leads({lead})", json={"jobtitle": "mine"}, headers={"If-Match": etag})
    admin.dynamics.faults("")
    assert unconditional.status_code == 204  # nothing to conflict with: the fault does not apply
    assert conditional.status_code == 412
    assert error_code(conditional) == "0x80060882"
    reread = api.get(f"leads({lead})").json()
    assert reread["@odata.etag"] != etag
    assert reread["jobtitle"] == "no etag"
    retried = api.patch(f"leads({lead})", json={"jobtitle": "mine"}, headers={"If-Match": reread["@odata.etag"]})
    assert retried.status_code == 204
