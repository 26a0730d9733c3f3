"""Marketo's limits (606 rate, 615 concurrency, 607 daily quota), token expiry, and injected faults."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.marketo.testing import MarketoHttp
from mktdyn_sandbox.sandbox import Sandbox

LEAD = "/rest/v1/lead/1.json"


@pytest.fixture
def limited(make_sandbox: Callable[..., Sandbox]) -> Iterator[tuple[MarketoHttp, SandboxAdmin]]:
    sandbox = make_sandbox(limits=True)
    api, admin = MarketoHttp(sandbox.info), SandboxAdmin(sandbox.info)
    yield api, admin
    api.close()
    admin.close()


def code_of(body: dict[str, Any]) -> str | None:
    return None if body.get("success") else str(body["errors"][0]["code"])


def test_606_after_100_calls_in_20_seconds(limited: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = limited
    api.authenticate()
    assert [code_of(api.get(LEAD)) for _ in range(100)] == [None] * 100
    refused = api.get(LEAD)
    assert refused["errors"] == [{"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}]
    assert api.identity().status_code == 200  # identity calls are free
    admin.marketo.advance_clock(20.5)
    assert code_of(api.get(LEAD)) is None
    assert admin.marketo.stats()["rejected"]["606"] == 1


def test_failed_calls_do_not_count_against_the_window(limited: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = limited
    admin.marketo.config(rate_limit_calls=3, rate_limit_window=5)
    for _ in range(4):
        assert code_of(api.get("/rest/v1/leads.json", filterType="id")) == "1003"
    assert [code_of(api.get(LEAD)) for _ in range(3)] == [None, None, None]
    assert api.get(LEAD)["errors"][0]["message"] == "Max rate limit '3' exceeded with in '5' secs"


def test_615_when_more_than_ten_calls_are_in_flight(limited: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = limited
    api.authenticate()
    admin.marketo.faults("marketo.latency_ms=600")
    barrier = threading.Barrier(15)
    codes: list[str | None] = []
    lock = threading.Lock()

    def call() -> None:
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait()
            body = session.get(
                f"{api.base_url}{LEAD}",
                headers={"Authorization": f"Bearer {api.token}"},
                verify=api.session.verify,
                timeout=30,
            ).json()
        with lock:
            codes.append(code_of(body))

    threads = [threading.Thread(target=call) for _ in range(15)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes.count(None) == 10
    assert codes.count("615") == 5
    admin.marketo.faults("")
    assert code_of(api.get(LEAD)) is None


def test_607_daily_quota(limited: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = limited
    admin.marketo.config(daily_quota=3)
    assert [code_of(api.get(LEAD)) for _ in range(3)] == [None, None, None]
    assert api.get(LEAD)["errors"] == [{"code": "607", "message": "Daily quota reached"}]
    admin.marketo.config(daily_quota=50000)
    assert api.get("/rest/v1/stats/usage.json")["result"][0]["total"] == 4  # 3 + this one; refusals are free


def test_limits_off_with_no_limits(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(limits=False)
    api, admin = MarketoHttp(sandbox.info), SandboxAdmin(sandbox.info)
    admin.marketo.config(daily_quota=1, rate_limit_calls=1)
    assert [code_of(api.get(LEAD)) for _ in range(3)] == [None, None, None]
    api.close()
    admin.close()


def test_602_after_expiry_then_a_new_token(limited: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = limited
    old = api.authenticate()
    admin.marketo.advance_clock(3600)
    assert api.get(LEAD)["errors"] == [{"code": "602", "message": "Access token expired"}]
    assert api.authenticate() != old
    assert code_of(api.get(LEAD)) is None


# -- injected faults ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MarketoHttp, SandboxAdmin]]:
    from mktdyn_sandbox.sandbox import SandboxOptions
    from mktdyn_sandbox.testing import SESSION_SEED

    sandbox = Sandbox(
        SandboxOptions(
            directory=tmp_path_factory.mktemp("marketo-faults"), limits=False, export_delay=0.05, **SESSION_SEED
        )
    )
    info = sandbox.start()
    api, admin = MarketoHttp(info), SandboxAdmin(info)
    api.authenticate()
    yield api, admin
    api.close()
    admin.close()
    sandbox.stop()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("601", "Access token invalid"),
        ("602", "Access token expired"),
        ("606", "Max rate limit '100' exceeded with in '20' secs"),
        ("607", "Daily quota reached"),
        ("611", "System error"),
        ("615", "Concurrent access limit '10' reached"),
    ],
)
def test_injected_error_codes(faulty: tuple[MarketoHttp, SandboxAdmin], code: str, message: str) -> None:
    api, admin = faulty
    admin.marketo.faults(f"marketo.{code}=1")
    try:
        response = api.request("GET", LEAD)
        assert response.status_code == 200
        assert response.json()["errors"] == [{"code": code, "message": message}]
        assert api.identity().status_code == 200  # the identity service answers in its own shape
    finally:
        admin.marketo.faults("")
    assert code_of(api.get(LEAD)) is None


def test_injected_1029_only_hits_export_queueing(faulty: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = faulty
    admin.marketo.faults("marketo.1029=1")
    try:
        assert code_of(api.get(LEAD)) is None
        body = api.post(
            "/bulk/v1/leads/export/create.json",
            {
                "fields": ["id"],
                "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}},
            },
        )
        assert body["errors"] == [{"code": "1029", "message": "Too many jobs in queue"}]
    finally:
        admin.marketo.faults("")


def test_injected_reset_drops_the_connection(faulty: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = faulty
    admin.marketo.faults("marketo.reset=1")
    try:
        with pytest.raises(requests.ConnectionError):
            api.request("GET", LEAD)
    finally:
        admin.marketo.faults("")
    assert code_of(api.get(LEAD)) is None
