"""Odd API responses at the network edge, and user values that must never reach a query unescaped (issue 11).

Each answer a real server (or a proxy in front of it) can give by mistake must end in an error naming the
request and what was wrong with the answer, never in rows silently lost, garbage rows, or a KeyError.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mktdyn_common.errors import ApiError, ConfigurationError
from mktdyn_common.transport import secure_base_url
from tap_marketo_leads.export import parse_export_csv
from tap_marketo_leads.values import ValueTyper

from tests.tap_dynamics.scripted_server import Reply, ScriptedServer
from tests.tap_dynamics.test_client_offline import FixedTokens, query_of
from tests.tap_dynamics.test_client_offline import make_client as make_dataverse_client
from tests.tap_marketo.fakes import ScriptedAdapter, envelope, make_client
from tests.tap_marketo.test_export_unit import TYPER_SCHEMA

HTML = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
JSON_HEADERS = {"Content-Type": "application/json"}

# -- Marketo ---------------------------------------------------------------------------------------
MARKETO_ODD: list[tuple[str, Any, str]] = [
    ("html-page", (200, HTML, {"Content-Type": "text/html"}), "expected a JSON envelope, got text/html"),
    ("truncated-json", (200, '{"success":true,"result":[{"id":1', JSON_HEADERS), "expected a JSON envelope"),
    ("not-an-object", (200, [1, 2]), "expected a JSON object, got list"),
    ("missing-result", (200, envelope()), "no 'result' described"),
    ("result-a-string", (200, envelope("oops")), "'result' is not a list of objects: 'oops'"),
    ("result-of-numbers", (200, envelope([1, 2])), "'result' is not a list of objects"),
    ("failure-without-errors", (200, {"requestId": "r", "success": False}), "success was false without an error"),
]


@pytest.mark.parametrize(("reply", "fragment"), [c[1:] for c in MARKETO_ODD], ids=[c[0] for c in MARKETO_ODD])
def test_marketo_odd_answers_are_errors_naming_the_request(reply: Any, fragment: str) -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", "/rest/v1/leads/describe.json", [reply])
    client = make_client(adapter)
    with pytest.raises(ApiError) as caught:
        client.describe_leads()
    assert "Marketo GET /rest/v1/leads/describe.json" in str(caught.value)
    assert fragment in str(caught.value)


HEADER = b"id,firstName,notes,syncToDynamics,updatedAt,score\n"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        # An unbalanced quote swallows every later row into one value: Bob would be lost without a word.
        (
            b'1,A\x00nn,"open quote,true,2024-05-01T10:00:00Z,1\n2,Bob,x,false,2024-05-02T10:00:00Z,2\n',
            "row 1 (id '1')",
        ),
        (b"1,Ann,x,true,2024-05-01T10:00:00Z,1\n2,Bob\n", "row 2 (id '2') has 2 values for 6 columns"),
        (b"1,Ann,x,true,2024-05-01T10:00:00Z,1,extra\n", "has 7 values for 6 columns"),
    ],
    ids=["nul-and-unbalanced-quote", "truncated-row", "extra-value"],
)
def test_a_malformed_export_file_stops_instead_of_losing_rows(body: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        list(parse_export_csv([HEADER + body], ValueTyper(TYPER_SCHEMA)))
    assert caught.value.code == "invalid-export"
    assert fragment in str(caught.value)


def test_nul_bytes_and_quoted_quotes_alone_are_fine() -> None:
    body = b'1,A\x00nn,"say ""hi"", then, go",true,2024-05-01T10:00:00Z,1\n'
    rows = list(parse_export_csv([HEADER + body], ValueTyper(TYPER_SCHEMA)))
    assert rows[0]["firstName"] == "Ann"
    assert rows[0]["notes"] == 'say "hi", then, go'


def test_a_value_with_a_comma_never_reaches_a_marketo_filter() -> None:
    """``filterValues`` has no escape: ``o,neil@x.com`` would be split and find ``neil@x.com``."""
    adapter = ScriptedAdapter()
    adapter.on("POST", "/rest/v1/leads.json", [(200, envelope([{"id": 9, "email": "neil@x.example"}]))])
    client = make_client(adapter)
    assert list(client.get_leads("email", ["o,neil@x.example"], ["email"])) == []
    assert adapter.calls_to("/rest/v1/leads.json") == []
    list(client.get_leads("email", ["o,neil@x.example", "ann@x.example"], ["email"]))
    (call,) = adapter.calls_to("/rest/v1/leads.json")
    assert call.form()["filterValues"] == ["ann@x.example"]


# -- Dataverse -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


DATAVERSE_ODD: list[tuple[str, Reply, str]] = [
    ("html-page", Reply(raw=HTML.encode(), headers={"Content-Type": "text/html"}), "expected JSON, got '<html>"),
    ("truncated-json", Reply(raw=b'{"value":[{"leadid":"1"'), "invalid_json"),
    ("missing-value", Reply(body={"@odata.context": "x"}), "expected 'value' to be a list of objects, got 'None'"),
    ("value-a-string", Reply(body={"value": "oops"}), "expected 'value' to be a list of objects, got 'oops'"),
    ("value-of-numbers", Reply(body={"value": [1, 2]}), "expected 'value' to be a list of objects"),
]


@pytest.mark.parametrize(("reply", "fragment"), [c[1:] for c in DATAVERSE_ODD], ids=[c[0] for c in DATAVERSE_ODD])
@pytest.mark.parametrize("call", ["query", "changes", "attributes"])
def test_dataverse_odd_answers_are_errors_naming_the_request(
    server: ScriptedServer, call: str, reply: Reply, fragment: str
) -> None:
    client = make_dataverse_client(server, FixedTokens())
    server.script(reply)
    with pytest.raises(ApiError) as caught:
        if call == "query":
            list(client.query("leads", ["leadid"]))
        elif call == "changes":
            list(client.changes("leads", ["leadid"]))
        else:
            client.attributes("lead")
    assert str(caught.value).startswith("Dataverse GET ")
    assert fragment in str(caught.value)


def test_dataverse_column_without_a_name_is_an_error_not_a_key_error(server: ScriptedServer) -> None:
    client = make_dataverse_client(server, FixedTokens())
    server.script(Reply(body={"value": [{"AttributeType": "String"}]}))
    with pytest.raises(ApiError, match="a column without LogicalName"):
        client.attributes("lead")


@pytest.mark.parametrize(
    "email", ["o'brien@x.example", "a' or emailaddress1 ne 'x", "x@y.example') or (1 eq 1", "zoë+é@exämple.example"]
)
def test_user_values_reach_an_odata_filter_only_as_one_escaped_literal(server: ScriptedServer, email: str) -> None:
    client = make_dataverse_client(server, FixedTokens())
    server.script(Reply(body={"value": []}))
    client.find_by_email("leads", email, ["leadid"])
    sent = query_of(server.seen[0].path)["$filter"]
    assert sent == "emailaddress1 eq '" + email.replace("'", "''") + "'"


# -- transport -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.5:8080", "http://localhost.evil.example", "ftp://127.0.0.1"]
)
def test_plain_http_is_refused_for_any_host_but_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError, match="'base_url'"):
        secure_base_url(url, "base_url")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2", "https://x.example"])
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    assert secure_base_url(url, "base_url") == url
