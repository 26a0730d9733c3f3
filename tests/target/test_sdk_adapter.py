"""The SDK internals the target relies on still exist as it relies on them (plugin/sdk.py).

An SDK upgrade that renames a private hook would otherwise surface as a sync that silently stops parsing
timestamps or noticing how streams were extracted; this fails first, naming the hook.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from target_mktdyn_merge.plugin import sdk
from target_mktdyn_merge.plugin.target import TargetMktdynMerge


@pytest.mark.parametrize(("owner", "name", "parameters"), sdk.PRIVATE_HOOKS, ids=[h[1] for h in sdk.PRIVATE_HOOKS])
def test_private_hook_still_has_the_parameters_relied_on(owner: type, name: str, parameters: tuple[str, ...]) -> None:
    assert hasattr(owner, name), f"singer-sdk no longer has {owner.__name__}.{name}"
    assert sdk.hook_parameters(owner, name) == parameters


def test_datelike_detection_matches_the_sdk() -> None:
    assert sdk.is_datelike({"type": ["string", "null"], "format": "date-time"})
    assert sdk.is_datelike({"type": "string", "format": "date"})
    assert not sdk.is_datelike({"type": ["string", "null"]})
    assert not sdk.is_datelike({"type": "integer"})


def _target() -> TargetMktdynMerge:
    return TargetMktdynMerge(config={"store_url": "sqlite://"}, validate_config=False)


def test_sink_parses_only_datelike_fields_and_keeps_the_private_attributes() -> None:
    target = _target()
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "updatedAt": {"type": ["string", "null"], "format": "date-time"},
            "firstName": {"type": ["string", "null"]},
        },
    }
    sink = target.get_sink("marketo_leads", schema=schema, key_properties=["id"])
    for attribute in sdk.PRIVATE_SINK_ATTRIBUTES:
        assert hasattr(sink, attribute), f"singer-sdk sinks no longer carry {attribute}"
    record = {"id": 1, "updatedAt": "2026-01-02T03:04:05Z", "firstName": "2026-01-02T03:04:05Z"}
    sink._parse_timestamps_in_record(record, schema, sink.datetime_error_treatment)
    assert isinstance(record["updatedAt"], datetime)
    assert record["firstName"] == "2026-01-02T03:04:05Z"  # a string that looks like a date stays a string


def test_state_messages_reach_the_target_before_the_sdk() -> None:
    target = _target()
    bookmarks = {"marketo_leads": {"extraction": "full"}, "dynamics_leads": {"extraction": "incremental"}}
    target._process_state_message({"type": "STATE", "value": {"bookmarks": bookmarks}})
    assert target.extraction == {"marketo_leads": "full", "dynamics_leads": "incremental"}
