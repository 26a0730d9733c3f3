"""The bulk lead export: lifecycle, the CSV file (nulls, quoting, noise), Range, checksum, filters, queue, quota."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.marketo.testing import MarketoHttp
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from mktdyn_sandbox.testing import SESSION_SEED

EXPORT = "/bulk/v1/leads/export"
FIELDS = ["id", "email", "firstName", "lastName", "dynamicsLeadId", "syncToDynamics"]
NAMES = [("Renée", 'Smith, "Jr."'), ("Zoë", "O'Brien"), ("Søren", "Line\u2028Separator")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MarketoHttp, SandboxAdmin]]:
    sandbox = Sandbox(
        SandboxOptions(
            directory=tmp_path_factory.mktemp("marketo-export"), limits=False, export_delay=0.05, **SESSION_SEED
        )
    )
    info = sandbox.start()
    api, admin = MarketoHttp(info), SandboxAdmin(info)
    yield api, admin
    api.close()
    admin.close()
    sandbox.stop()


def window(minutes: float = 5) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "startAt": (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endAt": (now + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def create(api: MarketoHttp, flt: dict[str, Any], fields: list[str] = FIELDS, **extra: Any) -> dict[str, Any]:
    return api.post(f"{EXPORT}/create.json", {"fields": fields, "format": "CSV", "filter": flt, **extra})


def run(
    api: MarketoHttp, flt: dict[str, Any], fields: list[str] = FIELDS, **extra: Any
) -> tuple[dict[str, Any], bytes]:
    export_id = create(api, flt, fields, **extra)["result"][0]["exportId"]
    api.post(f"{EXPORT}/{export_id}/enqueue.json")
    deadline = time.monotonic() + 10
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.get(f"{EXPORT}/{export_id}/status.json")["result"][0]
        if status["status"] == "Completed":
            break
        time.sleep(0.02)
    assert status["status"] == "Completed"
    return status, api.request("GET", f"{EXPORT}/{export_id}/file.json").content


def test_lifecycle_file_and_ranges(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, _ = env
    created = api.post(
        "/rest/v1/leads.json",
        {
            "action": "createOnly",
            "input": [
                {"email": f"export{i}@example.com", "firstName": first, "lastName": last}
                for i, (first, last) in enumerate(NAMES)
            ],
        },
    )
    ids = [r["id"] for r in created["result"]]
    job = create(api, {"createdAt": window()}, columnHeaderNames={"firstName": "First Name"})["result"][0]
    export_id = job["exportId"]
    assert job["status"] == "Created"
    early = api.request("GET", f"{EXPORT}/{export_id}/file.json")
    assert early.status_code == 404
    assert early.headers["Content-Type"].startswith("text/plain")
    assert api.request("GET", f"{EXPORT}/00000000-0000-0000-0000-000000000000/file.json").status_code == 404
    seen = [api.post(f"{EXPORT}/{export_id}/enqueue.json")["result"][0]["status"]]
    deadline = time.monotonic() + 10
    while seen[-1] != "Completed" and time.monotonic() < deadline:
        status = api.get(f"{EXPORT}/{export_id}/status.json")["result"][0]
        if status["status"] != seen[-1]:
            seen.append(status["status"])
        time.sleep(0.01)
    assert seen == ["Queued", "Processing", "Completed"]
    whole = api.request("GET", f"{EXPORT}/{export_id}/file.json")
    assert whole.status_code == 200
    assert whole.headers["Content-Type"].startswith("text/csv")
    data = whole.content
    assert status["fileSize"] == len(data)
    assert status["numberOfRecords"] == len(NAMES)
    assert status["fileChecksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert data.splitlines()[0] == b"id,email,First Name,lastName,dynamicsLeadId,syncToDynamics"
    assert b'"Smith, ""Jr."""' in data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    assert [int(row["id"]) for row in rows] == ids
    assert [(row["First Name"], row["lastName"]) for row in rows] == NAMES
    assert {row["dynamicsLeadId"] for row in rows} == {"null"}
    assert {row["syncToDynamics"] for row in rows} == {"false"}

    head = api.request("GET", f"{EXPORT}/{export_id}/file.json", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206
    assert head.content == data[:10]
    assert head.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert head.headers["Accept-Ranges"] == "bytes"
    tail = api.request("GET", f"{EXPORT}/{export_id}/file.json", headers={"Range": "bytes=10-"})
    assert tail.status_code == 206
    assert head.content + tail.content == data
    assert tail.headers["Content-Range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
    probe = api.request("GET", f"{EXPORT}/{export_id}/file.json", headers={"Range": "bytes=0-0"})
    assert probe.content == data[:1]
    beyond = api.request("GET", f"{EXPORT}/{export_id}/file.json", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416


def test_updated_at_filter_sees_custom_field_changes(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = env
    before = admin.marketo.record("person", 30)
    assert before is not None
    admin.marketo.edit("person", 30, {"dynamicsLeadId": "00000000-0000-0000-0000-000000000030"})
    _, data = run(api, {"updatedAt": window()}, ["id", "updatedAt", "dynamicsLeadId"])
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(data.decode("utf-8")))}
    assert rows["30"]["dynamicsLeadId"] == "00000000-0000-0000-0000-000000000030"
    assert rows["30"]["updatedAt"] == before["updatedAt"]  # visible updatedAt did not move


def test_a_change_counts_in_the_window_ending_at_its_second(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    """Marketo stamps changes to the second: a window ending at the change's second (what a run starting a
    fraction of a second after the edit asks for) holds it; one ending the second before does not."""
    api, admin = env
    admin.marketo.edit("person", 31, {"title": "Stamped to the second"})
    second = datetime.now(UTC).replace(microsecond=0)
    while datetime.now(UTC).replace(microsecond=0) == second:  # the edit's second is over: no later stamp
        time.sleep(0.01)

    def ids(end: datetime) -> set[str]:
        flt = {"startAt": (end - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        flt["endAt"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        _, data = run(api, {"updatedAt": flt}, ["id", "title"])
        return {row["id"] for row in csv.DictReader(io.StringIO(data.decode("utf-8")))}

    assert "31" in ids(second)
    assert "31" not in ids(second - timedelta(seconds=1))


def test_1035_switch_and_create_errors(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = env
    admin.marketo.config(updated_at_filter=False)
    try:
        refused = create(api, {"updatedAt": window()})
        assert refused["errors"] == [{"code": "1035", "message": "Unsupported filter type for target subscription"}]
        assert create(api, {"createdAt": window()})["success"] is True
    finally:
        admin.marketo.config(updated_at_filter=True)
    assert create(api, {"updatedAt": window()})["success"] is True
    assert create(api, {"smartListId": 1})["errors"][0]["code"] == "1035"
    assert create(api, {"createdAt": window()}, ["id", "site", "nope"])["errors"] == [
        {"code": "1003", "message": "Invalid fields [nope]"}
    ]
    assert create(api, {"createdAt": window(60 * 24 * 16)})["errors"][0]["code"] == "1003"  # 32 days
    assert create(api, {"createdAt": window(), "staticListId": 1001})["errors"][0]["code"] == "1003"
    unknown = api.get(f"{EXPORT}/11111111-1111-1111-1111-111111111111/status.json")
    assert unknown["errors"][0]["code"] == "1003"


def test_static_list_export_and_noise(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = env
    _, clean = run(api, {"staticListId": 1001}, ["id", "firstName", "lastName"])
    assert len(clean.splitlines()) == 51
    admin.marketo.config(export_file_noise=True)
    try:
        _, noisy = run(api, {"staticListName": "Sync Pilot"}, ["id", "firstName", "lastName"])
    finally:
        admin.marketo.config(export_file_noise=False)
    assert b"\x00" in noisy
    assert b"\r" in noisy
    assert noisy.replace(b"\x00", b"").replace(b"\r", b"") == clean


def test_daily_export_quota(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = env
    run(api, {"staticListId": 1002}, ["id"])
    admin.marketo.config(export_daily_quota_mb=0.0001)
    try:
        refused = create(api, {"createdAt": window()})
        assert refused["errors"][0]["code"] == "1029"
        assert "Export daily quota" in refused["errors"][0]["message"]
    finally:
        admin.marketo.config(export_daily_quota_mb=500)


def test_queue_limits_cancel_and_listing(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(export_delay=60)
    api, admin = MarketoHttp(sandbox.info), SandboxAdmin(sandbox.info)
    jobs = [create(api, {"createdAt": window()})["result"][0]["exportId"] for _ in range(12)]
    for export_id in jobs[:10]:
        assert api.post(f"{EXPORT}/{export_id}/enqueue.json")["result"][0]["status"] == "Queued"
    assert api.post(f"{EXPORT}/{jobs[10]}/enqueue.json")["errors"] == [
        {"code": "1029", "message": "Too many jobs in queue"}
    ]
    assert api.post(f"{EXPORT}/{jobs[0]}/enqueue.json")["errors"] == [{"code": "1029", "message": "Job already queued"}]
    admin.marketo.advance_clock(61)
    processing = api.get(f"{EXPORT}.json", status="Processing")["result"]
    assert sorted(job["exportId"] for job in processing) == sorted(jobs[:2])
    assert api.post(f"{EXPORT}/{jobs[5]}/cancel.json")["result"][0]["status"] == "Cancelled"
    cancelled = api.get(f"{EXPORT}.json", status=["Cancelled", "Created"])["result"]
    assert {job["exportId"] for job in cancelled} == {jobs[5], jobs[10], jobs[11]}
    assert api.post(f"{EXPORT}/{jobs[10]}/enqueue.json")["result"][0]["status"] == "Queued"
    paged = api.get(f"{EXPORT}.json", batchSize=5)
    assert len(paged["result"]) == 5
    assert paged["nextPageToken"]
    assert admin.marketo.stats()["exports_created"] == 12
    api.close()
    admin.close()


def test_status_moves_at_most_once_per_interval(env: tuple[MarketoHttp, SandboxAdmin]) -> None:
    api, admin = env
    admin.marketo.config(export_status_interval=60)
    try:
        export_id = create(api, {"staticListId": 1002}, ["id"])["result"][0]["exportId"]
        api.post(f"{EXPORT}/{export_id}/enqueue.json")
        assert api.get(f"{EXPORT}/{export_id}/status.json")["result"][0]["status"] == "Queued"
        time.sleep(0.2)  # the job has moved on, but the reported status is held for the interval
        assert api.get(f"{EXPORT}/{export_id}/status.json")["result"][0]["status"] == "Queued"
        admin.marketo.advance_clock(61)
        assert api.get(f"{EXPORT}/{export_id}/status.json")["result"][0]["status"] != "Queued"
    finally:
        admin.marketo.config(export_status_interval=0)
