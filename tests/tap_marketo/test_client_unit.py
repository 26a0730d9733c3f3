"""The Marketo client against a scripted network edge: auth, retries, error mapping, batching, outcomes."""

from __future__ import annotations

import pytest
import requests
from mktdyn_common.errors import AuthenticationError, QuotaExceededError, TransientError
from tap_marketo_leads.envelope import MarketoApiError

from .fakes import ScriptedAdapter, Seen, envelope, failure, make_client

DESCRIBE = "/rest/v1/leads/describe.json"
LEADS = "/rest/v1/leads.json"


def test_token_is_posted_in_a_form_body_and_sent_as_bearer() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, envelope([]))])
    client = make_client(adapter)
    client.describe_leads()
    token_call = adapter.calls_to("/identity/oauth/token")[0]
    assert token_call.method == "POST"
    assert token_call.query == {}
    assert token_call.form()["client_secret"] == ["s3cret-value"]
    assert all("s3cret" not in str(s.query) for s in adapter.seen)
    assert adapter.calls_to(DESCRIBE)[0].headers["Authorization"] == "Bearer tok-1:ab"
    assert client.calls == {"auth": 1, "metadata": 1}


def test_describe_is_fetched_once_per_client() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, envelope([{"id": 1}]))])
    client = make_client(adapter)
    assert client.describe_leads() == client.describe_leads()
    assert len(adapter.calls_to(DESCRIBE)) == 1


@pytest.mark.parametrize("code", ["601", "602"])
def test_rejected_token_is_replaced_and_the_call_repeated(code: str) -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, failure(code, "Access token expired")), (200, envelope([]))])
    client = make_client(adapter)
    assert client.describe_leads() == []
    assert len(adapter.calls_to("/identity/oauth/token")) == 2
    assert client.retries[f"code-{code}"] == 1


@pytest.mark.parametrize("code", ["606", "615"])
def test_rate_limits_wait_and_retry(code: str) -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "GET",
        DESCRIBE,
        [
            (200, failure(code, "Max rate limit '100' exceeded with in '20' secs")),
            (200, failure(code)),
            (200, envelope([])),
        ],
    )
    sleeps: list[float] = []
    client = make_client(adapter, sleeps)
    assert client.describe_leads() == []
    assert len(sleeps) == 2
    assert all(0 < s <= 20 for s in sleeps)


def test_persistent_rate_limit_gives_up_only_after_waiting_out_the_window() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, failure("606"))])
    sleeps: list[float] = []
    client = make_client(adapter, sleeps)
    with pytest.raises(TransientError, match="606"):
        client.describe_leads()
    assert sum(sleeps) > 20


def test_daily_quota_stops_with_when_to_retry() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, failure("607", "Daily quota reached"))])
    client = make_client(adapter)
    with pytest.raises(QuotaExceededError) as caught:
        client.describe_leads()
    assert "607" in str(caught.value)
    assert "midnight" in str(caught.value)
    assert "GET /rest/v1/leads/describe.json" in str(caught.value)
    assert len(adapter.calls_to(DESCRIBE)) == 1


def test_export_quota_1029_is_a_quota_error() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "POST", "/bulk/v1/leads/export/create.json", [(200, failure("1029", "Export daily quota 500MB exceeded"))]
    )
    client = make_client(adapter)
    from datetime import UTC, datetime

    with pytest.raises(QuotaExceededError, match="1029"):
        client.create_lead_export(["id"], datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))


def test_other_codes_fail_naming_endpoint_and_code() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(200, failure("1003", "Invalid fields [foo]"))])
    with pytest.raises(MarketoApiError) as caught:
        make_client(adapter).describe_leads()
    assert str(caught.value) == "Marketo GET /rest/v1/leads/describe.json: error 1003 (HTTP 200): Invalid fields [foo]"


def test_bad_credentials_are_an_authentication_error_naming_the_settings() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "POST",
        "/identity/oauth/token",
        [(401, {"error": "invalid_client", "error_description": "Bad client credentials"})],
    )
    adapter.on("GET", DESCRIBE, [(200, envelope([]))])
    with pytest.raises(AuthenticationError, match="client_secret"):
        make_client(adapter).describe_leads()


def test_token_endpoint_hiccups_are_retried() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "POST",
        "/identity/oauth/token",
        [requests.ConnectionError("reset"), (503, "busy"), (200, {"access_token": "t2", "expires_in": 3600})],
    )
    adapter.on("GET", DESCRIBE, [(200, envelope([]))])
    client = make_client(adapter)
    client.describe_leads()
    assert adapter.calls_to(DESCRIBE)[0].headers["Authorization"] == "Bearer t2"


def test_resets_and_5xx_on_reads_are_retried() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "GET",
        DESCRIBE,
        [
            requests.ConnectionError("Connection reset by peer"),
            (502, "<html>bad gateway"),
            (200, failure("611", "System error")),
            (200, envelope([{"id": 1}])),
        ],
    )
    client = make_client(adapter)
    assert client.describe_leads() == [{"id": 1}]
    assert client.retries == {"connection": 1, "http-5xx": 1, "code-611": 1}


def test_retries_run_out() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", DESCRIBE, [(503, "down")])
    with pytest.raises(TransientError, match="gave up after 6 retries"):
        make_client(adapter).describe_leads()


def test_custom_activities_are_not_reposted_when_in_doubt() -> None:
    adapter = ScriptedAdapter()
    adapter.on("POST", "/rest/v1/activities/external.json", [requests.ConnectionError("reset"), (200, envelope([]))])
    client = make_client(adapter)
    with pytest.raises(TransientError, match="in-doubt"):
        client.add_activities(
            [
                {
                    "leadId": 1,
                    "activityDate": "2024-01-01T00:00:00Z",
                    "activityTypeId": 100001,
                    "primaryAttributeValue": "run",
                    "attributes": [],
                }
            ]
        )
    assert len(adapter.calls_to("/rest/v1/activities/external.json")) == 1


def test_daily_call_budget_is_enforced_per_client() -> None:
    adapter = ScriptedAdapter()
    adapter.on("GET", "/rest/v1/activities/types.json", [(200, envelope([]))])
    client = make_client(adapter, max_daily_calls=3)
    for _ in range(3):
        client.get_activity_types()
    with pytest.raises(QuotaExceededError, match="max_daily_calls"):
        client.get_activity_types()
    assert client.calls["metadata"] == 3


def test_get_leads_chunks_values_by_300_and_follows_pages() -> None:
    adapter = ScriptedAdapter()

    def leads(seen: Seen) -> tuple[int, object]:
        form = seen.form()
        values = form["filterValues"][0].split(",")
        if "nextPageToken" not in form and values[0] == "0":
            return 200, envelope([{"id": int(v)} for v in values[:200]], nextPageToken="p2", moreResult=True)
        if "nextPageToken" in form:
            return 200, envelope([{"id": int(v)} for v in values[200:]])
        return 200, envelope([{"id": int(v)} for v in values])

    adapter.on("POST", LEADS, leads)
    client = make_client(adapter)
    ids = [lead["id"] for lead in client.get_leads("id", range(650), ["email"])]
    assert ids == list(range(650))
    calls = adapter.calls_to(LEADS)
    assert len(calls) == 4
    assert all(c.query == {"_method": ["GET"]} for c in calls)
    assert [len(c.form()["filterValues"][0].split(",")) for c in calls] == [300, 300, 300, 50]
    assert calls[0].form()["fields"] == ["id,email"]
    assert client.calls["read"] == 4


def test_sync_leads_returns_outcomes_in_input_order_across_batches() -> None:
    adapter = ScriptedAdapter()

    def sync(seen: Seen) -> tuple[int, object]:
        body = seen.json()
        assert body["action"] == "updateOnly"
        assert body["lookupField"] == "id"
        result = []
        for record in body["input"]:
            if record["id"] % 100 == 0:
                result.append({"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]})
            else:
                result.append({"id": record["id"], "status": "updated"})
        return 200, envelope(result)

    adapter.on("POST", LEADS, sync)
    client = make_client(adapter)
    outcomes = client.sync_leads("updateOnly", [{"id": i + 1, "firstName": "x"} for i in range(350)], "id")
    assert len(adapter.calls_to(LEADS)) == 2
    assert [o.index for o in outcomes] == list(range(350))
    skipped = [o for o in outcomes if o.status == "skipped"]
    assert [o.index for o in skipped] == [99, 199, 299]
    assert skipped[0].reasons == (("1004", "Lead not found"),)
    assert skipped[0].id is None
    assert outcomes[0].status == "updated"
    assert outcomes[0].id == 1
    assert client.calls["write"] == 2


def test_mismatched_result_count_is_an_error() -> None:
    adapter = ScriptedAdapter()
    adapter.on("POST", LEADS, [(200, envelope([{"id": 1, "status": "created"}]))])
    with pytest.raises(Exception, match="cannot be paired"):
        make_client(adapter).sync_leads("createOnly", [{"email": "a@x"}, {"email": "b@x"}], "email")


def test_custom_activity_skips_read_errors_key() -> None:
    adapter = ScriptedAdapter()
    adapter.on(
        "POST",
        "/rest/v1/activities/external.json",
        [
            (
                200,
                envelope(
                    [
                        {"id": 50, "marketoGUID": "50", "status": "added"},
                        {"status": "skipped", "errors": [{"code": "1004", "message": "Lead not found"}]},
                    ]
                ),
            )
        ],
    )
    outcomes = make_client(adapter).add_activities([{"leadId": 1}, {"leadId": 2}])
    assert outcomes[0].marketo_guid == "50"
    assert outcomes[0].ok
    assert outcomes[1].reasons == (("1004", "Lead not found"),)
    assert not outcomes[1].ok
