"""The sandbox fires webhooks as Marketo does: definitions, token rendering, the call, response mappings, stats.

Every call goes to a real local HTTP(S) receiver (``http.server`` in a thread) that records what it got
and answers as its path says: ``/ok`` 200 with a JSON body, ``/fail`` 500 with the same body, ``/slow``
after ``SLOW_SECONDS``. Results are read back through the sandbox's REST API, as a client would.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.marketo.testing import MarketoHttp, WebhookAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from mktdyn_sandbox.testing import SESSION_SEED

SLOW_SECONDS = 3.0
ANSWER = {"result": {"status": "Webhook Qualified", "leadId": "0f8fad5b-d9cb-469f-a165-70867728950e"}}
CALL_WEBHOOK = 110
CHANGE_DATA_VALUE = 13


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A threaded HTTP server recording requests and answering by path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                if self.path.startswith("/slow"):
                    time.sleep(SLOW_SECONDS)
                status = 500 if self.path.startswith("/fail") else 200
                payload = json.dumps(ANSWER).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the caller gave up (a timeout)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        scheme = "https" if tls is not None else "http"
        host = "localhost" if tls is not None else "127.0.0.1"
        self.url = f"{scheme}://{host}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    instance = Sandbox(
        SandboxOptions(directory=tmp_path_factory.mktemp("webhooks"), limits=False, export_delay=0.05, **SESSION_SEED)
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def info(sandbox: Sandbox) -> dict[str, Any]:
    return sandbox.info


@pytest.fixture(scope="module")
def hooks(info: dict[str, Any]) -> Iterator[WebhookAdmin]:
    client = WebhookAdmin(info)
    yield client
    client.close()


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


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh(receiver: Receiver) -> None:
    receiver.received.clear()


def lead(api: MarketoHttp, person_id: int, fields: str = "updatedAt,leadStatus,dynamicsLeadId") -> dict[str, Any]:
    body = api.get("/rest/v1/leads.json", filterType="id", filterValues=str(person_id), fields=fields)
    assert body["success"] is True, body
    record: dict[str, Any] = body["result"][0]
    return record


def mapping_webhook(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "request_type": "POST",
        "template": '{"id": {{lead.Id}}, "email": {{lead.Email Address}}}',
        "encoding": "json",
        "headers": {"X-Mktdyn-Secret": "s3cret"},
        "response_type": "json",
        "response_mappings": [
            {"attribute": "result.status", "field": "leadStatus"},
            {"attribute": "result.leadId", "field": "DynamicsLeadId"},
        ],
    }


def activities(api: MarketoHttp, person_id: int, type_ids: str) -> list[dict[str, Any]]:
    token = api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2000-01-01")["nextPageToken"]
    found: list[dict[str, Any]] = []
    while True:
        body = api.get(
            "/rest/v1/activities.json", nextPageToken=token, activityTypeIds=type_ids, leadIds=str(person_id)
        )
        found.extend(body.get("result", []))
        token = body["nextPageToken"]
        if not body["moreResult"]:
            return found


# -- rendering ------------------------------------------------------------------------------------
def test_json_template_renders_tokens_with_quotes_and_unicode_escaped_and_sends_headers(
    hooks: WebhookAdmin, admin: SandboxAdmin, receiver: Receiver
) -> None:
    first = 'Zoë "Z" O\'Brien\\ \u2603'
    admin.marketo.edit("person", 3, {"firstName": first, "title": None})
    record = admin.marketo.record("person", 3)
    assert record is not None
    status, body = hooks.define(
        {
            "name": "render-json",
            "url": f"{receiver.url}/ok/{{{{lead.Id}}}}",
            "template": '{"id": {{lead.Id}}, "email": {{lead.Email Address}}, "first": {{lead.First Name}}, '
            '"title": {{lead.Job Title}}, "fallback": {{lead.Job Title:default=none given}}, '
            '"campaign": {{campaign.name}}, "cid": {{campaign.id}}, "at": {{system.dateTime}}}',
            "encoding": "json",
            "headers": {"X-Mktdyn-Secret": "s3cret", "X-Lead": "{{lead.Id}}"},
        }
    )
    assert status == 200, body
    status, result = hooks.trigger("render-json", [3], {"id": 1042, "name": 'Sync "Person" to Microsoft'})
    assert status == 200, result
    assert [o["status"] for o in result["outcomes"]] == [200]
    [got] = receiver.received
    assert (got.method, got.path) == ("POST", "/ok/3")
    assert got.headers["X-Mktdyn-Secret"] == "s3cret"
    assert got.headers["X-Lead"] == "3"
    assert got.headers["Content-Type"] == "application/json"
    sent = json.loads(got.body.decode("utf-8"))
    assert sent["id"] == 3
    assert sent["email"] == record["email"]
    assert sent["first"] == first
    assert sent["title"] == ""  # an empty string token stays a valid JSON string
    assert sent["fallback"] == "none given"
    assert sent["campaign"] == 'Sync "Person" to Microsoft'
    assert sent["cid"] == 1042
    assert len(sent["at"]) == len("2026-01-01 00:00:00")
    assert b'\\"Z\\"' in got.body  # quotes escaped in the raw body
    assert b"\\\\" in got.body  # and backslashes


def test_form_encoding_keeps_ampersands_inside_their_field(
    hooks: WebhookAdmin, admin: SandboxAdmin, receiver: Receiver
) -> None:
    admin.marketo.edit("person", 4, {"firstName": "Jack & Jill=Co", "lastName": "Smith"})
    status, body = hooks.define(
        {
            "name": "render-form",
            "url": f"{receiver.url}/ok",
            "template": "first={{lead.First Name}}&last={{lead.Last Name}}&id={{lead.Id}}",
            "encoding": "form",
        }
    )
    assert status == 200, body
    status, _ = hooks.trigger("render-form", [4])
    assert status == 200
    [got] = receiver.received
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(got.body.decode()) == {"first": ["Jack & Jill=Co"], "last": ["Smith"], "id": ["4"]}


# -- response mappings ----------------------------------------------------------------------------
def test_a_2xx_answer_maps_values_onto_the_person_bumps_updated_at_and_logs_activities(
    hooks: WebhookAdmin, admin: SandboxAdmin, api: MarketoHttp, receiver: Receiver
) -> None:
    assert hooks.define(mapping_webhook("map-ok", f"{receiver.url}/ok"))[0] == 200
    before = lead(api, 5)
    admin.marketo.advance_clock(5)
    status, result = hooks.trigger("map-ok", [5], {"id": 7, "name": "Sync Person"})
    assert status == 200, result
    [outcome] = result["outcomes"]
    assert outcome["status"] == 200
    assert outcome["mapped"] == {"leadStatus": "Webhook Qualified", "dynamicsLeadId": ANSWER["result"]["leadId"]}
    after = lead(api, 5)
    assert after["leadStatus"] == "Webhook Qualified"
    assert after["dynamicsLeadId"] == ANSWER["result"]["leadId"]
    assert after["updatedAt"] > before["updatedAt"]
    calls = activities(api, 5, str(CALL_WEBHOOK))
    assert len(calls) == 1
    assert calls[0]["primaryAttributeValue"] == "map-ok"
    attributes = {a["name"]: a["value"] for a in calls[0]["attributes"]}
    assert attributes["Response Code"] == 200
    assert attributes["Campaign Name"] == "Sync Person"
    changes = activities(api, 5, str(CHANGE_DATA_VALUE))
    webhook_changes = [c for c in changes if {"name": "Reason", "value": "Webhook: map-ok"} in c["attributes"]]
    assert {c["primaryAttributeValue"] for c in webhook_changes} == {"Person Status", "Dynamics Lead Id"}
    assert calls[0]["id"] < min(c["id"] for c in webhook_changes)  # the call is logged before its changes


@pytest.mark.parametrize("path", ["fail", "slow"])
def test_a_500_or_a_timeout_maps_nothing(
    path: str, hooks: WebhookAdmin, admin: SandboxAdmin, api: MarketoHttp, receiver: Receiver
) -> None:
    name = f"map-{path}"
    person = 6 if path == "fail" else 7
    assert hooks.define(mapping_webhook(name, f"{receiver.url}/{path}"))[0] == 200
    admin.marketo.config(webhook_timeouts={name: 1})
    before = lead(api, person)
    admin.marketo.advance_clock(5)
    status, result = hooks.trigger(name, [person])
    assert status == 200, result
    [outcome] = result["outcomes"]
    if path == "fail":
        assert (outcome["status"], outcome["error"]) == (500, None)
    else:
        assert (outcome["status"], outcome["error"]) == (None, "timeout")
        assert 900 <= outcome["elapsed_ms"] < SLOW_SECONDS * 1000
    assert outcome["mapped"] == {}
    assert len(receiver.received) == 1  # the call was made
    assert lead(api, person) == before
    [call] = activities(api, person, str(CALL_WEBHOOK))
    attributes = {a["name"]: a["value"] for a in call["attributes"]}
    assert attributes["Response Code"] == (500 if path == "fail" else None)
    assert attributes["Error Type"] == (None if path == "fail" else "timeout")


def test_https_receiver_verified_with_the_sandbox_ca(
    hooks: WebhookAdmin, sandbox: Sandbox, api: MarketoHttp, receiver: Receiver
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sandbox.directory / "server.pem", sandbox.directory / "server-key.pem")
    secure = Receiver(tls=context)
    try:
        assert hooks.define(mapping_webhook("map-tls", f"{secure.url}/ok"))[0] == 200
        status, result = hooks.trigger("map-tls", [8])
        assert status == 200
        assert result["outcomes"][0]["status"] == 200
        assert lead(api, 8)["dynamicsLeadId"] == ANSWER["result"]["leadId"]
        assert len(secure.received) == 1
    finally:
        secure.close()


def test_persons_fire_in_order_and_concurrently_up_to_the_bound(hooks: WebhookAdmin, receiver: Receiver) -> None:
    assert hooks.define({"name": "order", "url": f"{receiver.url}/ok/{{{{lead.Id}}}}", "template": ""})[0] == 200
    status, result = hooks.trigger("order", [11, 12, 13])
    assert status == 200
    assert [r.path for r in receiver.received] == ["/ok/11", "/ok/12", "/ok/13"]
    status, result = hooks.trigger("order", [14, 15, 16, 17], concurrency=4)
    assert status == 200
    assert [o["person"] for o in result["outcomes"]] == [14, 15, 16, 17]
    assert {o["status"] for o in result["outcomes"]} == {200}
    assert hooks.trigger("order", [14], concurrency=99)[0] == 400


# -- definitions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"response_mappings": [{"attribute": "result.x", "field": "noSuchField"}]}, "noSuchField"),
        ({"response_mappings": [{"attribute": "result.x", "field": "createdAt"}]}, "createdAt"),
        ({"response_mappings": [{"attribute": "result[a]", "field": "leadStatus"}]}, "result[a]"),
        ({"url": "http://example.com/hook"}, "example.com"),
        ({"url": "ftp://127.0.0.1/hook"}, "ftp://127.0.0.1/hook"),
        ({"template": '{"x": {{lead.Favourite Colour}}}'}, "{{lead.Favourite Colour}}"),
        ({"headers": {"X-Bad": "a\r\nb"}}, "X-Bad"),
        ({"request_type": "PUT"}, "request_type"),
        ({"response_type": "xml"}, "XML"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"),
    ],
)
def test_a_bad_definition_is_a_400_naming_the_part(
    change: dict[str, Any], named: str, hooks: WebhookAdmin, receiver: Receiver
) -> None:
    status, body = hooks.define({**mapping_webhook("bad", f"{receiver.url}/ok"), **change})
    assert status == 400
    assert named in body["error"]
    assert "bad" not in {w["name"] for w in hooks.listing()}


def test_redefining_by_name_replaces_and_keeps_the_id(hooks: WebhookAdmin, receiver: Receiver) -> None:
    _, first = hooks.define(mapping_webhook("replace-me", f"{receiver.url}/ok"))
    _, second = hooks.define({**mapping_webhook("replace-me", f"{receiver.url}/fail"), "response_mappings": []})
    assert second["id"] == first["id"]
    [listed] = [w for w in hooks.listing() if w["name"] == "replace-me"]
    assert listed["url"].endswith("/fail")
    assert listed["response_mappings"] == []
    assert hooks.trigger("no-such-webhook", [1])[0] == 400
    status, body = hooks.trigger("replace-me", [999_999])
    assert status == 400
    assert "999999" in body["error"]


def test_stats_count_calls_outcomes_timeouts_and_mapped_values(
    hooks: WebhookAdmin, admin: SandboxAdmin, receiver: Receiver
) -> None:
    for name, path in (("stats-ok", "ok"), ("stats-fail", "fail"), ("stats-slow", "slow")):
        assert hooks.define(mapping_webhook(name, f"{receiver.url}/{path}"))[0] == 200
    admin.marketo.config(webhook_timeouts={"stats-slow": 1})
    admin.marketo.reset_stats()
    hooks.trigger("stats-ok", [20, 21])
    hooks.trigger("stats-fail", [22])
    hooks.trigger("stats-slow", [23])
    stats = admin.marketo.stats()
    assert stats["webhook_calls"] == 4
    assert stats["webhook_status_2xx"] == 2
    assert stats["webhook_status_5xx"] == 1
    assert stats["webhook_timeouts"] == 1
    assert stats["webhook_mapped_values"] == 4  # two fields on each of two persons
    assert stats["requests_total"] == 0  # admin and outbound calls are not API requests


def test_the_default_timeout_is_marketos_30_seconds(admin: SandboxAdmin, info: dict[str, Any]) -> None:
    settings = admin.marketo.config()
    assert settings["webhook_timeout"] == 30
    assert Path(info["ca_bundle"]).is_file()


def test_call_webhook_is_a_listed_activity_type(api: MarketoHttp) -> None:
    types = {t["id"]: t for t in api.get("/rest/v1/activities/types.json")["result"]}
    assert types[CALL_WEBHOOK]["name"] == "Call Webhook"
    assert types[CALL_WEBHOOK]["primaryAttribute"]["name"] == "Webhook ID"


def test_a_get_webhook_sends_no_body_and_renders_the_url(hooks: WebhookAdmin, receiver: Receiver) -> None:
    definition = {
        "name": "get-hook",
        "url": f"{receiver.url}/ok?lead={{{{lead.Id}}}}&campaign={{{{campaign.id}}}}",
        "request_type": "GET",
        "template": '{"ignored": {{lead.Id}}}',
    }
    assert hooks.define(definition)[0] == 200
    assert hooks.trigger("get-hook", [9], {"id": 55, "name": "c"})[0] == 200
    [got] = receiver.received
    assert (got.method, got.path, got.body) == ("GET", "/ok?lead=9&campaign=55", b"")
    assert "Content-Type" not in got.headers
