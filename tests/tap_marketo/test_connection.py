"""Settings → MarketoConnection: the URL forms Marketo shows, and readable errors naming the setting."""

from __future__ import annotations

import pytest
from mktdyn_common.errors import ConfigurationError
from tap_marketo_leads.connection import MarketoConnection

GOOD = {"base_url": "https://123-ABC-456.mktorest.com", "client_id": "id", "client_secret": "secret"}


@pytest.mark.parametrize(
    "url",
    [
        "https://123-ABC-456.mktorest.com",
        "https://123-ABC-456.mktorest.com/",
        "https://123-ABC-456.mktorest.com/rest",
        "https://123-ABC-456.mktorest.com/rest/",
        "https://123-ABC-456.mktorest.com/identity",
        "https://123-ABC-456.mktorest.com/identity/",
    ],
)
def test_base_url_forms_name_the_same_host(url: str) -> None:
    assert MarketoConnection.from_config({**GOOD, "base_url": url}).base_url == "https://123-ABC-456.mktorest.com"


def test_loopback_may_use_http() -> None:
    assert (
        MarketoConnection.from_config({**GOOD, "base_url": "http://127.0.0.1:8443/rest"}).base_url
        == "http://127.0.0.1:8443"
    )


@pytest.mark.parametrize(
    ("settings", "setting", "words"),
    [
        ({"base_url": "http://123-ABC-456.mktorest.com"}, "base_url", "plain http"),
        ({"base_url": "123-ABC-456.mktorest.com"}, "base_url", "not an absolute"),
        ({"base_url": "https://x.mktorest.com/soap"}, "base_url", "unexpected path"),
        ({"base_url": ""}, "base_url", "is required"),
        ({"client_secret": ""}, "client_secret", "is required"),
        ({"client_id": None}, "client_id", "is required"),
        ({"page_size": 301}, "page_size", "between 1 and 300"),
        ({"request_timeout": 0}, "request_timeout", "greater than 0"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle", "not a readable file"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, object], setting: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        MarketoConnection.from_config({**GOOD, **settings})
    assert caught.value.setting == setting
    assert words in str(caught.value)


def test_target_prefix_and_secret_not_in_repr() -> None:
    connection = MarketoConnection.from_config({f"marketo_{k}": v for k, v in GOOD.items()}, prefix="marketo_")
    assert connection.client_secret == "secret"
    assert "secret" not in repr(connection).replace("client_secret", "")
    with pytest.raises(ConfigurationError, match="marketo_client_id"):
        MarketoConnection.from_config({"marketo_base_url": GOOD["base_url"]}, prefix="marketo_")
