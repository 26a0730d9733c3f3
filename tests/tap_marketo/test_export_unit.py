"""Bulk export files: a real CSV parse over the byte stream, Range resume, checksum, 404 retries."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mktdyn_common.errors import ApiError
from tap_marketo_leads.export import LeadExporter, download_export, parse_export_csv
from tap_marketo_leads.schema import build_lead_schema
from tap_marketo_leads.values import ValueTyper

from .fakes import ScriptedAdapter, Seen, envelope, make_client

DESCRIBE = [
    {"dataType": "integer", "rest": {"name": "id"}},
    {"dataType": "string", "rest": {"name": "firstName"}},
    {"dataType": "textarea", "rest": {"name": "notes"}},
    {"dataType": "boolean", "rest": {"name": "syncToDynamics"}},
    {"dataType": "datetime", "rest": {"name": "updatedAt"}},
    {"dataType": "float", "rest": {"name": "score"}},
]
TYPER_SCHEMA = build_lead_schema(DESCRIBE).schema["properties"]

FILE = (
    "id,firstName,notes,syncToDynamics,updatedAt,score\r\n"
    '1,Zoë,"line one\nline two, with comma",true,2024-05-01T10:00:00Z,1.5\r\n'
    '2,"O\'Brien ""Bob""",null,false,2024-05-02T10:00:00Z,null\n'
    '3,Ma\x00ria,"cr\rinside quotes",null,2024-05-03T10:00:00Z,2\n'
    "4,Bare\rCR,sep\u2028arated,true,2024-05-04T10:00:00Z,3\n"
    '5,山田,"多言語\u2028テキスト",false,2024-05-05T10:00:00Z,4'
).encode()


def _rows(chunks: list[bytes]) -> list[dict[str, object]]:
    return list(parse_export_csv(chunks, ValueTyper(TYPER_SCHEMA)))


def _expected() -> list[dict[str, object]]:
    return [
        {
            "id": 1,
            "firstName": "Zoë",
            "notes": "line one\nline two, with comma",
            "syncToDynamics": True,
            "updatedAt": "2024-05-01T10:00:00Z",
            "score": 1.5,
        },
        {
            "id": 2,
            "firstName": 'O\'Brien "Bob"',
            "notes": None,
            "syncToDynamics": False,
            "updatedAt": "2024-05-02T10:00:00Z",
            "score": None,
        },
        {
            "id": 3,
            "firstName": "Maria",
            "notes": "cr\rinside quotes",
            "syncToDynamics": None,
            "updatedAt": "2024-05-03T10:00:00Z",
            "score": 2,
        },
        {
            "id": 4,
            "firstName": "BareCR",
            "notes": "sep\u2028arated",
            "syncToDynamics": True,
            "updatedAt": "2024-05-04T10:00:00Z",
            "score": 3,
        },
        {
            "id": 5,
            "firstName": "山田",
            "notes": "多言語\u2028テキスト",
            "syncToDynamics": False,
            "updatedAt": "2024-05-05T10:00:00Z",
            "score": 4,
        },
    ]


def test_csv_quirks_parse_into_typed_records() -> None:
    assert _rows([FILE]) == _expected()


def test_chunk_boundaries_do_not_matter() -> None:
    one_byte = [FILE[i : i + 1] for i in range(len(FILE))]
    assert _rows(one_byte) == _expected()


def _file_server(adapter: ScriptedAdapter, body: bytes, break_at: int | None) -> list[str | None]:
    ranges: list[str | None] = []

    def serve(seen: Seen) -> object:
        rng = seen.headers.get("Range")
        ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if len(ranges) == 1 and break_at is not None:
            return 200, body[:break_at]  # the test's iter_content then breaks the stream
        return (206 if rng else 200), body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}

    adapter.on("GET", "/bulk/v1/leads/export/e1/file.json", serve)  # type: ignore[arg-type]
    return ranges


def test_download_resumes_with_range_and_checks_the_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = ScriptedAdapter()
    ranges = _file_server(adapter, FILE, break_at=40)
    client = make_client(adapter)
    original = requests.Response.iter_content

    def iter_content(self: requests.Response, chunk_size: int = 1, decode_unicode: bool = False) -> Iterator[Any]:
        yield from original(self, chunk_size, decode_unicode)
        if self.headers.get("Content-Type") == "text/csv" and len(ranges) == 1:
            raise requests.exceptions.ChunkedEncodingError("Connection broken: reset")

    monkeypatch.setattr(requests.Response, "iter_content", iter_content)
    checksum = "sha256:" + hashlib.sha256(FILE).hexdigest()
    data = b"".join(download_export(client, "e1", expected_size=len(FILE), expected_checksum=checksum))
    assert data == FILE
    assert ranges == [None, "bytes=40-"]
    assert client.retries["download-resume"] == 1


def test_checksum_mismatch_is_an_error() -> None:
    adapter = ScriptedAdapter()
    _file_server(adapter, FILE, break_at=None)
    with pytest.raises(ApiError, match="checksum"):
        b"".join(download_export(make_client(adapter), "e1", expected_checksum="sha256:" + "0" * 64))


def test_a_just_completed_file_answering_404_is_retried() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "GET",
        "/bulk/v1/leads/export/e1/file.json",
        [(404, "Export file not found"), (404, "Export file not found"), (200, FILE)],
    )
    adapter.on(
        "GET",
        "/bulk/v1/leads/export/e1/status.json",
        [(200, envelope([{"exportId": "e1", "status": "Completed", "fileSize": len(FILE)}]))],
    )
    client = make_client(adapter)
    exporter = LeadExporter(client, poll_interval=0, sleep=lambda _: None)
    job = exporter.wait("e1")
    assert len(list(exporter.records("e1", job, ValueTyper(TYPER_SCHEMA)))) == 5
    assert client.retries["file-not-ready"] == 2


def test_wait_polls_until_completed_and_enqueues_a_created_job() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "GET",
        "/bulk/v1/leads/export/e1/status.json",
        [
            (200, envelope([{"exportId": "e1", "status": "Created"}])),
            (200, envelope([{"exportId": "e1", "status": "Queued"}])),
            (200, envelope([{"exportId": "e1", "status": "Processing"}])),
            (200, envelope([{"exportId": "e1", "status": "Completed"}])),
        ],
    )
    adapter.on("POST", "/bulk/v1/leads/export/e1/enqueue.json", [(200, envelope([{"status": "Queued"}]))])
    sleeps: list[float] = []
    exporter = LeadExporter(make_client(adapter), poll_interval=2.5, sleep=sleeps.append)
    assert exporter.wait("e1")["status"] == "Completed"
    assert sleeps == [2.5, 2.5, 2.5]
    assert len(adapter.calls_to("/bulk/v1/leads/export/e1/enqueue.json")) == 1
