"""The frameworks' floors: trivial singer-sdk plugins the benchmarks run next to ours (``common.floor_command``).

Kept apart from ``common.py`` so a floor process imports the SDK and nothing of the benchmark harness: its
start-up is the framework's, not ours (psutil and the sandbox's helpers alone take 0.1 s per process).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar


def floor_tap_main(template_path: Path, counts: dict[str, int]) -> None:
    """A trivial singer-sdk tap emitting ``counts[stream]`` copies of the template's sample records."""
    from singer_sdk import Stream, Tap

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # so the SDK prints its record_count metrics
    template = json.loads(template_path.read_text())

    class MemoryStream(Stream):
        def __init__(self, tap: Tap, name: str) -> None:
            self._samples = template[name]["records"]
            self._key = template[name]["key"]
            self._count = counts.get(name, 0)
            super().__init__(tap=tap, schema=template[name]["schema"], name=name)
            self.primary_keys = [self._key]
            if template[name].get("replication_key"):
                self.replication_key = template[name]["replication_key"]

        def get_records(self, context: Any) -> Iterator[dict[str, Any]]:
            samples, key = self._samples, self._key
            for index in range(self._count):
                record = dict(samples[index % len(samples)])
                record[key] = index + 1 if isinstance(record.get(key), int) else f"{index:032x}"
                yield record

    class FloorTap(Tap):
        name = "tap-floor"
        config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

        def discover_streams(self) -> list[Stream]:
            return [MemoryStream(self, name) for name in template]

    FloorTap(config={}).sync_all()


def floor_target_main() -> None:
    """A no-op singer-sdk target: the SDK reads, parses and validates every record, the sink does nothing."""
    from singer_sdk import Target
    from singer_sdk.sinks import BatchSink

    class NoopSink(BatchSink):
        MAX_SIZE_DEFAULT = 5000

        def process_batch(self, context: dict[str, Any]) -> None:
            return None

    class NoopTarget(Target):
        name = "target-noop"
        config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
        default_sink_class = NoopSink

    NoopTarget.cli()


def floor_cli_tap_main() -> None:
    """A trivial singer-sdk tap with its CLI (discovery included) and one stream that has nothing new."""
    from singer_sdk import Stream, Tap

    class QuietStream(Stream):
        def get_records(self, context: Any) -> Iterator[dict[str, Any]]:
            return iter(())

    class QuietTap(Tap):
        name = "tap-floor"
        config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

        def discover_streams(self) -> list[Stream]:
            schema = {"type": "object", "properties": {"id": {"type": "integer"}, "updatedAt": {"type": "string"}}}
            stream = QuietStream(tap=self, schema=schema, name="quiet")
            stream.primary_keys = ["id"]
            stream.replication_key = "updatedAt"
            return [stream]

    QuietTap.cli()


def main(argv: list[str]) -> None:
    """``--floor-tap TEMPLATE COUNTS_JSON``, ``--floor-cli-tap [tap args]`` or ``--floor-target [target args]``."""
    if argv and argv[0] == "--floor-tap":
        floor_tap_main(Path(argv[1]), json.loads(argv[2]))
    elif argv and argv[0] == "--floor-cli-tap":
        sys.argv = [sys.argv[0], *argv[1:]]
        floor_cli_tap_main()
    elif argv and argv[0] == "--floor-target":
        sys.argv = [sys.argv[0], *argv[1:]]
        floor_target_main()
    else:
        raise SystemExit(
            "usage: floors.py --floor-tap TEMPLATE COUNTS | --floor-cli-tap [ARGS] | --floor-target [ARGS]"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
