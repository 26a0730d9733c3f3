"""Malformed Singer input: one sentence naming the line, stream, record and field, never a bare traceback.

The SDK stops on bad input with its own exceptions (``InvalidInputLine``, ``RecordsWithoutSchemaException``,
``InvalidRecord``, ``MissingKeyPropertiesError``, a ``ValueError`` for an unparsable timestamp, a
``TypeError`` for a record that is not an object) whose messages name neither the line nor the record, and
which reach the user as a traceback. The reader below numbers the lines and turns each of them into a
:class:`SingerInputError` that says where the input is wrong, so a broken tap is found from the error alone.
Nothing of the bad batch is staged: records are staged only when a batch drains, and a drain never runs
after the bad line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from mktdyn_common.errors import MktdynError
from singer_sdk.exceptions import (
    InvalidJSONSchema,
    InvalidRecord,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_mktdyn_merge.core.record_types import RecordTypeCheck
from target_mktdyn_merge.core.vocabulary import STREAMS, UnknownStreamError

#: What the SDK (or a sink) raises on input it cannot use; anything else is not the input's fault.
INPUT_ERRORS: tuple[type[Exception], ...] = (
    InvalidInputLine,
    RecordsWithoutSchemaException,
    InvalidRecord,
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    UnknownStreamError,
    ValueError,  # the SDK's "Could not parse value ... for field ..." (timestamps)
    TypeError,  # a record or schema that is not an object
    KeyError,  # a SCHEMA without "properties" deep inside the SDK
    AttributeError,  # a "record" that is a string or number
    RecursionError,  # a message nested deeper than validation or staging can walk
)


#: A ``\\uD800``-``\\uDFFF`` escape: JSON text that may decode to a lone surrogate (not text; no store keeps it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


class LoneSurrogateError(ValueError):
    """A string holding a lone UTF-16 surrogate: valid JSON, but not text, so nothing can store or send it."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"field {path!r}: holds a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF escape), which is not text"
        )


class TooDeepError(InvalidInputLine):
    """A line nested deeper than the parser's recursion allows (no Singer message is nested like that)."""


def _lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) with a lone surrogate in ``value``, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate_path(str(key), path) or _lone_surrogate_path(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class RecordSchemaError(ValueError):
    """A record that does not match its stream's SCHEMA, with the field that does not."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r}: {problem}" if field else f"record: {problem}")


class QuietRecordValidator:
    """The SDK's record validator, raising :class:`RecordSchemaError` (which names the field).

    The SDK logs its own ``InvalidRecord`` with a full traceback before re-raising it; raising our own
    error skips that, so the user reads one sentence instead of a stack. A record the compiled type check
    proves valid skips ``jsonschema`` (see :mod:`target_mktdyn_merge.core.record_types`).
    """

    def __init__(self, inner: Any, schema: dict[str, Any]) -> None:
        self.inner = inner
        self.types = RecordTypeCheck(schema)

    def validate(self, record: dict[str, Any]) -> None:
        """Validate as the SDK does; name the field on failure."""
        if self.types.certainly_valid(record):
            return
        try:
            self.inner.validate(record)
        except InvalidRecord as exc:
            path = list(getattr(exc.__cause__, "absolute_path", []) or [])
            raise RecordSchemaError(".".join(str(part) for part in path), exc.error_message) from exc


class SingerInputError(MktdynError):
    """A Singer message the target cannot use; the message names the line, stream, record key and field."""

    def __init__(
        self, line_number: int | None, problem: str, stream: str | None = None, record_key: str | None = None
    ) -> None:
        where = "Singer input" if line_number is None else f"Singer input line {line_number}"
        if stream is not None:
            where += f", stream {stream!r}"
        if record_key is not None:
            where += f", record {record_key}"
        super().__init__(f"{where}: {problem}")
        self.line_number = line_number
        self.stream = stream
        self.record_key = record_key


def _message_of(line: Any) -> dict[str, Any] | None:
    try:
        message = json.loads(line) if isinstance(line, str | bytes) else line
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _record_key(message: dict[str, Any] | None) -> str | None:
    """``id=123`` for a RECORD of a stream we know, when the record carries its key."""
    if message is None or message.get("type") != "RECORD":
        return None
    spec = STREAMS.get(str(message.get("stream")))
    record = message.get("record")
    if spec is None or not isinstance(record, dict) or record.get(spec.key) in (None, ""):
        return None
    return f"{spec.key}={str(record[spec.key])[:80]}"


def _problem(exc: Exception, message: dict[str, Any] | None, raw_line: str) -> str:
    """One sentence for the SDK's exception, naming the field where the SDK knows it."""
    if isinstance(exc, TooDeepError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "the message is nested too deeply to process (no Singer message of these streams is nested)"
    if isinstance(exc, InvalidInputLine) and message is None:
        return f"not a JSON object: {raw_line.strip()[:120]!r}"
    if isinstance(exc, InvalidRecord):
        cause = exc.__cause__
        path = list(getattr(cause, "absolute_path", []) or [])
        field = ".".join(str(part) for part in path)
        return f"field {field!r}: {exc.error_message}" if field else f"record: {exc.error_message}"
    if isinstance(exc, RecordsWithoutSchemaException):
        return "a RECORD came before its stream's SCHEMA message"
    if isinstance(exc, MissingKeyPropertiesError):
        stream = STREAMS.get(str((message or {}).get("stream")))
        key = stream.key if stream is not None else "the key property"
        return f"field {key!r}: the record has no key property (every record needs its key)"
    if isinstance(exc, TypeError | AttributeError | KeyError) and message is not None:
        kind = str(message.get("type"))
        payload = "record" if kind == "RECORD" else "schema" if kind == "SCHEMA" else "message"
        return f"the {payload} is not a valid Singer {kind} message ({exc.__class__.__name__}: {exc})"
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


class CheckedSingerReader(SingerReader):
    """The SDK's reader, numbering lines and naming where the input is wrong when it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        #: Called with the error before it propagates (the target closes its run and exits with one line).
        self.on_bad_input: Callable[[SingerInputError], None] | None = None

    def deserialize_json(self, line: str) -> dict[str, Any]:
        """Count the line, then parse it as the SDK does (decimals exact), without its traceback in the log.

        A lone surrogate is refused here, naming its field: later it would stop staging with an encoder's
        message that names nothing. Only lines with a surrogate escape are searched (a cheap text test).
        """
        self.line_number += 1
        try:
            message = deserialize_json(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputLine(f"Unable to parse line as JSON: {line}") from exc
        except RecursionError as exc:
            raise TooDeepError("nested too deeply to parse (no Singer message of these streams is nested)") from exc
        if _SURROGATE_ESCAPE.search(line):
            path = _lone_surrogate_path(message)
            if path is not None:
                raise LoneSurrogateError(path.removeprefix("record."))
        return message

    def _skip_blank(self, lines: Iterator[str]) -> Iterator[str]:
        """Every line but blank ones, which are counted (line numbers stay true) and skipped, not fatal.

        A blank line carries no message; taps and shells add one at the end or between runs' outputs.
        """
        for text in lines:
            if text.strip():
                yield text
            else:
                self.line_number += 1

    def process_lines(self, file_input: IO[str] | None, callbacks: dict[str, Callable[[dict[str, Any]], None]]) -> Any:
        """Process every line; on input the target cannot use, raise :class:`SingerInputError` instead."""
        try:
            return super().process_lines(self._skip_blank(iter(file_input or self.default_input)), callbacks)  # type: ignore[arg-type]
        except SingerInputError as exc:
            self._report(exc)
            raise
        except INPUT_ERRORS as exc:
            if isinstance(exc, MktdynError):  # a store or API error raised while draining: not the input's
                raise
            raw = self._current_message or ""
            message = _message_of(raw)
            stream = message.get("stream") if message is not None else None
            error = SingerInputError(
                self.line_number,
                _problem(exc, message, str(raw)),
                stream=str(stream) if stream is not None else None,
                record_key=_record_key(message),
            )
            self._report(error)
            raise error from exc

    def _report(self, error: SingerInputError) -> None:
        if self.on_bad_input is not None:
            self.on_bad_input(error)
