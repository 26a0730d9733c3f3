"""The one place the target leans on the Singer SDK's private internals (docs/architecture.md §8).

Two measured needs reach below the SDK's public API: staging a Marketo person spent 15% of its time asking, for
every field of every record, whether the field is date-like (the answer depends on the schema alone), and the
target must see each STATE message's bookmarks (how each stream was extracted) and each RECORD message's
``time_extracted`` (when its tap read) before the SDK handles them. All are private hooks that an SDK release
may rename; :data:`PRIVATE_HOOKS` lists them with the parameters relied on, and
``tests/target/test_sdk_adapter.py`` fails on an upgrade that changes any of them, before a sync does.
"""

from __future__ import annotations

import inspect
from typing import Any

from singer_sdk import Target
from singer_sdk.helpers._typing import get_datelike_property_type
from singer_sdk.sinks import BatchSink, Sink

#: (class, private member, the parameter names this module relies on).
PRIVATE_HOOKS: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (Sink, "_parse_timestamps_in_record", ("self", "record", "schema", "treatment")),
    (Target, "_process_state_message", ("self", "message_dict")),
    (Target, "_process_record_message", ("self", "message_dict")),
)
#: Private attributes of a sink instance this module reads.
PRIVATE_SINK_ATTRIBUTES = ("_warned_missing_fields",)


def is_datelike(property_schema: dict[str, Any]) -> bool:
    """Whether the SDK parses values of this property as dates or timestamps."""
    return bool(get_datelike_property_type(property_schema))


def hook_parameters(owner: type, name: str) -> tuple[str, ...]:
    """The parameter names of a private hook as the installed SDK defines it."""
    return tuple(inspect.signature(getattr(owner, name)).parameters)


class DatelikeOnceSink(BatchSink):
    """A batch sink that works out which fields are date-like once per schema, not once per value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._datelike_of: dict[str, Any] | None = None
        self._datelike: dict[str, Any] = {}

    def _parse_timestamps_in_record(self, record: dict[str, Any], schema: dict[str, Any], treatment: Any) -> None:
        """The SDK's timestamp parsing, on the date-like fields only (the rest pass through untouched)."""
        properties = schema["properties"]
        if self._datelike_of is not schema:
            self._datelike_of = schema
            self._datelike = {k: v for k, v in properties.items() if is_datelike(v)}
        dated = {key: record[key] for key in self._datelike if key in record}
        if dated:
            super()._parse_timestamps_in_record(dated, {"properties": self._datelike}, treatment)
            record.update(dated)
        if not schema.get("additionalProperties", False):
            for key in record.keys() - properties.keys() - self._warned_missing_fields:
                if record[key] is not None:
                    self.logger.warning("No schema for record field '%s'", key)
                    self._warned_missing_fields.add(key)


class MessageObservingTarget(Target):
    """A target told of every STATE message's value, and of each RECORD message, before the SDK handles it."""

    def observe_state(self, value: Any) -> None:
        """Called with each STATE message's ``value``; the default ignores it."""

    def observe_record(self, message_dict: dict[str, Any]) -> None:
        """Called with each RECORD message (its envelope: ``time_extracted``); the default ignores it."""

    def _process_state_message(self, message_dict: dict[str, Any]) -> None:
        self.observe_state(message_dict.get("value"))
        super()._process_state_message(message_dict)

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        self.observe_record(message_dict)
        super()._process_record_message(message_dict)
