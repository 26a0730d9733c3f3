"""The service's own rules without a server: payload validation and its settings (a bad one stops it at start)."""

from __future__ import annotations

import pytest
from mktdyn_common.errors import ConfigurationError
from target_mktdyn_merge.ops.serve import PayloadError, parse_payload
from target_mktdyn_merge.ops.serve_settings import ServeSettings

SECRET = "0123456789abcdef"


@pytest.mark.parametrize(
    ("raw", "setting", "person", "dry_run"),
    [
        (b'{"personId": 42}', False, "42", False),
        (b'{"personId": "42", "email": "a@example.com", "campaignId": 7}', False, "42", False),
        (b'{"personId": 42, "dryRun": true}', False, "42", True),
        (b'{"personId": 42}', True, "42", True),  # the target's dry_run setting makes every request one
    ],
)
def test_valid_payloads(raw: bytes, setting: bool, person: str, dry_run: bool) -> None:
    accepted = parse_payload(raw, setting)
    assert (accepted.person_id, accepted.dry_run) == (person, dry_run)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"", "body: not JSON"),
        (b'{"personId": 0}', "field 'personId'"),
        (b'{"personId": true}', "field 'personId'"),
        (b'{"personId": 4.5}', "field 'personId'"),
        (b'{"personId": 4, "email": ["a"]}', "field 'email'"),
        (b'"42"', "body: must be a JSON object"),
    ],
)
def test_invalid_payloads_name_the_field(raw: bytes, named: str) -> None:
    with pytest.raises(PayloadError, match=named):
        parse_payload(raw, False)


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({}, "serve_secret"),
        ({"serve_secret": "short"}, "serve_secret"),
        ({"serve_secret": SECRET, "serve_secret_header": "X Bad"}, "serve_secret_header"),
        ({"serve_secret": SECRET, "serve_queue_limit": 0}, "serve_queue_limit"),
        ({"serve_secret": SECRET, "serve_answer_wait_seconds": "soon"}, "serve_answer_wait_seconds"),
    ],
)
def test_bad_settings_stop_the_service_naming_the_setting(config: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        ServeSettings.from_config(config)
    assert raised.value.setting == setting
    assert SECRET not in str(raised.value)


def test_the_secret_is_not_in_the_settings_repr() -> None:
    settings = ServeSettings.from_config({"serve_secret": SECRET})
    assert SECRET not in repr(settings)
    assert (settings.secret_header, settings.queue_limit, settings.batch_size) == ("X-Mktdyn-Secret", 1000, 300)
