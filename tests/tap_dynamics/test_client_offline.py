"""The Dataverse client at the network edge: a scripted loopback server, no sandbox, no msal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from mktdyn_common.backoff import Backoff
from mktdyn_common.errors import AuthenticationError, ConfigurationError, TransientError
from tap_dynamics_leads import batch, odata
from tap_dynamics_leads.auth import AuthorityHttpClient
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import ChangeTokenExpiredError, PreconditionFailedError

from tests.tap_dynamics.scripted_server import Reply, ScriptedServer


class FixedTokens:
    def __init__(self) -> None:
        self.issued = 0
        self.invalidated = 0

    def token(self) -> str:
        self.issued += 1
        return f"token-{self.invalidated}"

    def invalidate(self) -> None:
        self.invalidated += 1


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def tokens() -> FixedTokens:
    return FixedTokens()


def make_client(server: ScriptedServer, tokens: FixedTokens, **kw) -> DataverseClient:
    connection = DataverseConnection.from_config(
        {
            "base_url": server.url,
            "tenant_id": "t1",
            "client_id": "c1",
            "client_secret": "s3cret-value",
            "page_size": 2,
            **kw,
        }
    )
    return DataverseClient(connection, tokens=tokens, backoff=Backoff(base=0.01, cap=0.05, attempts=3))


def query_of(path: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(path).query).items()}


# -- literals --------------------------------------------------------------------------------------
def test_string_literal_doubles_quotes_and_guid_rejects_syntax() -> None:
    assert odata.string_literal("o'brien' or 1 eq 1") == "'o''brien'' or 1 eq 1'"
    assert odata.eq("emailaddress1", "a'b@x.com") == "emailaddress1 eq 'a''b@x.com'"
    assert odata.guid("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}") == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    with pytest.raises(ValueError, match="not a GUID"):
        odata.guid("00000000-0000-0000-0000-000000000000) or (1 eq 1")
    with pytest.raises(ValueError, match="identifier"):
        odata.identifier("leads?$filter=x")


def test_datetime_literal_is_utc_iso() -> None:
    assert odata.datetime_literal("2024-01-05T18:30:00+01:00") == "2024-01-05T17:30:00Z"
    assert odata.literal(True) == "true"
    assert odata.literal(None) == "null"


def test_query_encoding_keeps_literal_inside_its_parameter() -> None:
    encoded = odata.encode_query({"$filter": odata.eq("emailaddress1", "a&b=#+c'd@x.com")})
    for character in "&#+":
        assert character not in encoded
    assert parse_qs(encoded)["$filter"] == ["emailaddress1 eq 'a&b=#+c''d@x.com'"]


# -- settings ----------------------------------------------------------------------------------------
def test_connection_requires_https_except_loopback_and_names_prefixed_setting() -> None:
    base = {"tenant_id": "t", "client_id": "c", "client_secret": "s"}
    with pytest.raises(ConfigurationError, match=r"'dynamics_base_url'.*plain http"):
        DataverseConnection.from_config(
            {"dynamics_base_url": "http://org.example.com", **{f"dynamics_{k}": v for k, v in base.items()}},
            prefix="dynamics_",
        )
    with pytest.raises(ConfigurationError, match="'authority_host'"):
        DataverseConnection.from_config(
            {"base_url": "https://org.example.com", "authority_host": "http://login.example.com", **base}
        )
    with pytest.raises(ConfigurationError, match="'password'"):
        DataverseConnection.from_config(
            {"base_url": "https://org.example.com", "auth_flow": "password", "username": "u", **base}
        )
    local = DataverseConnection.from_config({"base_url": "http://127.0.0.1:8080/", **base})
    assert local.api_url == "http://127.0.0.1:8080/api/data/v9.2"
    assert "client_secret" not in repr(local)


# -- reads -------------------------------------------------------------------------------------------
def test_query_follows_next_link_with_same_page_size(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    next_link = f"{server.url}/api/data/v9.2/leads?$select=leadid&$skiptoken=abc"
    server.script(
        Reply(body={"value": [{"leadid": "1"}, {"leadid": "2"}], "@odata.nextLink": next_link}),
        Reply(body={"value": [{"leadid": "3"}]}),
    )
    rows = list(client.query("leads", ["leadid", "emailaddress1"], filter="statecode eq 0"))
    assert [row["leadid"] for row in rows] == ["1", "2", "3"]
    assert [seen.headers["Prefer"] for seen in server.seen] == ["odata.maxpagesize=2"] * 2
    assert query_of(server.seen[0].path)["$select"] == "leadid,emailaddress1"
    assert server.seen[1].path.endswith("$skiptoken=abc")
    assert client.calls["read"] == 2


def test_find_by_email_sends_an_escaped_literal(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(Reply(body={"value": []}))
    client.find_by_email("contacts", "o'brien' or 1 eq 1@example.com", ["contactid"])
    assert query_of(server.seen[0].path)["$filter"] == "emailaddress1 eq 'o''brien'' or 1 eq 1@example.com'"


def test_find_by_emails_asks_for_50_emails_per_request_each_an_escaped_literal(
    server: ScriptedServer, tokens: FixedTokens
) -> None:
    client = make_client(server, tokens)
    server.script(Reply(body={"value": [{"leadid": "1"}]}), Reply(body={"value": [{"leadid": "2"}]}))
    emails = ["o'brien' or 1 eq 1@example.com", *(f"p{i}@example.com" for i in range(50))]
    assert [row["leadid"] for row in client.find_by_emails("leads", emails, ["leadid"])] == ["1", "2"]
    filters = [query_of(seen.path)["$filter"] for seen in server.seen]
    assert filters[0].startswith(
        "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=['o''brien'' or 1 eq 1@example.com',"
    )
    assert filters[1] == "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=['p49@example.com'])"


def test_next_link_on_another_host_is_moved_onto_base_url(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(
        Reply(body={"value": [], "@odata.nextLink": "https://evil.example/api/data/v9.2/leads?$skiptoken=x"}),
        Reply(body={"value": []}),
    )
    list(client.query("leads", ["leadid"]))
    assert len(server.seen) == 2  # the second request reached our server, not evil.example


def test_changes_split_rows_and_deletes_and_return_delta_link(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    delta = f"{server.url}/api/data/v9.2/leads?$select=leadid&$deltatoken=99"
    server.script(
        Reply(
            body={
                "value": [
                    {"@odata.etag": 'W/"5"', "leadid": "a"},
                    {
                        "@odata.context": f"{server.url}/api/data/v9.2/$metadata#leads/$deletedEntity",
                        "id": "b",
                        "reason": "deleted",
                    },
                ],
                "@odata.deltaLink": delta,
            }
        )
    )
    pages = list(client.changes("leads", ["leadid"]))
    assert pages[0].rows == [{"@odata.etag": 'W/"5"', "leadid": "a"}]
    assert pages[0].deleted == ["b"]
    assert pages[-1].delta_link == delta
    assert "odata.track-changes" in server.seen[0].headers["Prefer"]


def test_expired_delta_token_is_a_distinct_error(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(
        Reply(
            status=400,
            body={
                "error": {
                    "code": "0x80044352",
                    "message": "Version stamp associated with the client has expired. Please perform a full sync.",
                }
            },
        )
    )
    with pytest.raises(ChangeTokenExpiredError, match="0x80044352"):
        list(client.changes("leads", ["leadid"], delta_link=f"{server.url}/api/data/v9.2/leads?$deltatoken=1"))


# -- retries and auth --------------------------------------------------------------------------------
def test_429_waits_retry_after_then_succeeds(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(
        Reply(
            status=429,
            headers={"Retry-After": "1"},
            body={"error": {"code": "0x80072322", "message": "Number of requests exceeded"}},
        ),
        Reply(body={"value": [{"leadid": "1"}]}),
    )
    started = time.monotonic()
    assert list(client.query("leads", ["leadid"])) == [{"leadid": "1"}]
    assert server.seen[1].at - server.seen[0].at >= 1.0
    assert time.monotonic() - started < 5


def test_503_is_retried_and_exhaustion_names_request(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(Reply(status=503, body={"error": {"code": "", "message": "busy"}}))
    with pytest.raises(TransientError, match=r"GET leads.*busy"):
        list(client.query("leads", ["leadid"]))
    assert len(server.seen) == 4  # first try + 3 retries


def test_401_gets_one_fresh_token(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(Reply(status=401, body={"error": {"code": "", "message": "expired"}}), Reply(body={"value": []}))
    assert list(client.query("leads", ["leadid"])) == []
    assert tokens.invalidated == 1
    assert server.seen[1].headers["Authorization"] == "Bearer token-1"
    server.script(Reply(status=401, body={"error": {"code": "", "message": "no user"}}))
    with pytest.raises(AuthenticationError, match="client_id"):
        list(client.query("leads", ["leadid"]))
    assert len(server.seen) == 2


# -- writes ------------------------------------------------------------------------------------------
LEAD_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_update_sends_if_match_and_maps_412(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    server.script(
        Reply(
            status=412,
            body={
                "error": {
                    "code": "0x80060882",
                    "message": "The version of the existing record doesn't match the RowVersion property provided.",
                }
            },
        )
    )
    with pytest.raises(PreconditionFailedError, match=r"PATCH leads\(3f2504e0.*0x80060882.*HTTP 412"):
        client.update("leads", LEAD_ID, {"firstname": "X"}, etag='W/"7"')
    assert server.seen[0].headers["If-Match"] == 'W/"7"'
    assert server.seen[0].headers["Prefer"] == "return=representation"
    assert len(server.seen) == 1  # a 412 is an answer, not retried


def test_batch_round_trip_reports_each_operation(server: ScriptedServer, tokens: FixedTokens) -> None:
    client = make_client(server, tokens)
    answer = "\r\n".join(
        [
            "--batchresponse_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 201 Created",
            "Content-Type: application/json; odata.metadata=minimal",
            "",
            json.dumps({"@odata.etag": 'W/"11"', "leadid": LEAD_ID, "lastname": "A"}),
            "--batchresponse_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 400 Bad Request",
            "Content-Type: application/json",
            "",
            json.dumps({"error": {"code": "0x80044331", "message": "The length of the 'lastname' attribute exceeded"}}),
            "--batchresponse_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 204 No Content",
            f"OData-EntityId: {server.url}/api/data/v9.2/leads({LEAD_ID})",
            "",
            "",
            "--batchresponse_1--",
            "",
        ]
    )
    server.script(Reply(raw=answer.encode(), headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"}))
    results = client.batch(
        [
            batch.BatchOperation.create("leads", {"lastname": "A"}),
            batch.BatchOperation.create("leads", {"lastname": "B" * 60}),
            batch.BatchOperation.delete("leads", LEAD_ID, etag='W/"3"'),
        ]
    )
    assert [r.status for r in results] == [201, 400, 204]
    assert results[0].etag == 'W/"11"'
    assert results[0].body is not None
    assert results[0].body["lastname"] == "A"
    assert (results[1].error_code, results[1].ok) == ("0x80044331", False)
    assert results[2].entity_id == LEAD_ID
    sent = server.seen[0]
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    text = sent.body.decode()
    assert f"DELETE {server.url}/api/data/v9.2/leads({LEAD_ID}) HTTP/1.1" in text
    assert 'If-Match: W/"3"' in text
    assert "changeset" not in text
    assert unquote(text).count("Content-ID:") == 3


def test_create_is_not_replayed_after_a_lost_connection(tokens: FixedTokens) -> None:
    with ScriptedServer() as server:
        url = server.url
    connection = DataverseConnection.from_config(
        {"base_url": url, "tenant_id": "t", "client_id": "c", "client_secret": "s3cret-value"}
    )
    client = DataverseClient(connection, tokens=tokens, backoff=Backoff(base=0.01, cap=0.02, attempts=2))
    # Nothing listens any more: the connection is refused before sending, so even a create may retry,
    # and the error after the retries names the request.
    with pytest.raises(TransientError, match="POST leads"):
        client.create("leads", {"lastname": "x"})
    assert client.calls["write"] == 3


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_batch_that_fails_after_sending_is_not_resent(
    server: ScriptedServer, tokens: FixedTokens, status: int
) -> None:
    """A 5xx may come after Dataverse processed the batch: resending could create a record twice."""
    client = make_client(server, tokens)
    server.script(Reply(status=status, body={"error": {"code": "", "message": "boom"}}))
    with pytest.raises(TransientError, match="outcome is unknown"):
        client.batch([batch.BatchOperation.create("leads", {"lastname": "Once"})])
    assert len(server.seen) == 1


def test_a_throttled_batch_is_resent(server: ScriptedServer, tokens: FixedTokens) -> None:
    """429 and 503 are refusals before any work: resending is safe."""
    client = make_client(server, tokens)
    server.script(
        Reply(status=429, headers={"Retry-After": "0"}, body={"error": {"code": "", "message": "slow"}}),
        Reply(status=503, body={"error": {"code": "", "message": "busy"}}),
    )
    with pytest.raises(TransientError):
        client.batch([batch.BatchOperation.create("leads", {"lastname": "Twice"})])
    assert len(server.seen) == 4


def test_the_authority_client_retries_throttling_and_hands_the_last_answer_to_msal(server: ScriptedServer) -> None:
    """Entra's token endpoint goes through the shared retry loop: 429/503 are retried after their
    Retry-After, and when the tries are spent the last answer is returned for msal to report."""
    connection = DataverseConnection.from_config(
        {"base_url": server.url, "tenant_id": "t1", "client_id": "c1", "client_secret": "s3cret-value"}
    )
    http = AuthorityHttpClient(connection, backoff=Backoff(base=0.01, cap=0.05, attempts=2))
    token = Reply(body={"access_token": "t", "expires_in": 3600})
    server.script(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=503), token)
    assert http.post(f"{server.url}/t1/oauth2/v2.0/token", data={"grant_type": "client_credentials"}).json() == {
        "access_token": "t",
        "expires_in": 3600,
    }
    assert len(server.seen) == 3
    server.script(Reply(status=503, body={"error": "temporarily_unavailable"}))
    assert http.post(f"{server.url}/t1/oauth2/v2.0/token", data={}).status_code == 503
    assert len(server.seen) == 3  # the first try and two retries
