"""Bad Singer input and broken configuration through the real target CLI (issue 11).

Each case feeds the staging leg (``merge: false``) a store that already holds staged records, then asserts
the exact outcome: the exit code, one line on stderr naming the line, stream, record and field (no
traceback), an intact store, and nothing previously staged changed. Valid records sent in the same batch
before the bad line are not staged either: the batch never drained, and its STATE never reached Meltano,
so the tap re-sends them next run.

The store runs on SQLite and on PostgreSQL (``tests/store_backends.py``) for what the store decides: cases
where valid records precede the bad line or staging itself refuses, hostile values, and the merge leg's
refusal. Cases the reader refuses before any store is touched run on SQLite only, to keep the suite fast.
"""

from __future__ import annotations

import copy
import json
import random
import string
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from target_mktdyn_merge.store.database import Store

from tests.store_backends import BACKENDS, fresh_store_url
from tests.store_integrity import assert_intact, snapshot
from tests.target.pipeline import BIN

MARKETO_SCHEMA = {
    "type": "SCHEMA",
    "stream": "marketo_leads",
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "email": {"type": ["string", "null"]},
            "firstName": {"type": ["string", "null"]},
            "lastName": {"type": ["string", "null"]},
            "title": {"type": ["string", "null"]},
        },
    },
    "key_properties": ["id"],
}
LEADS_SCHEMA = {
    "type": "SCHEMA",
    "stream": "dynamics_leads",
    "schema": {
        "type": "object",
        "properties": {
            "leadid": {"type": "string"},
            "modifiedon": {"type": "string", "format": "date-time"},
            "emailaddress1": {"type": ["string", "null"]},
            "firstname": {"type": ["string", "null"]},
            "lastname": {"type": ["string", "null"]},
        },
    },
    "key_properties": ["leadid"],
}
LEAD_ID = "7f0c9a52-1c1e-4c55-9a35-0c6c3b8f1a01"


def person(person_id: Any, **fields: Any) -> dict[str, Any]:
    record = {"id": person_id, "updatedAt": "2024-06-01T10:00:00Z", "email": f"p{person_id}@x.example", **fields}
    return {"type": "RECORD", "stream": "marketo_leads", "record": record}


def line(message: dict[str, Any] | str) -> str:
    return message if isinstance(message, str) else json.dumps(message)


def run_target(config: dict[str, Any] | Path, lines: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    if isinstance(config, dict):
        path = workdir / "target.json"
        path.write_text(json.dumps(config))
    else:
        path = config
    return subprocess.run(
        [str(BIN / "target-mktdyn-merge"), "--config", str(path)],
        input="".join(f"{text}\n" for text in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def staged(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A store holding persons 1-3 and one lead, staged by a clean run (what earlier runs left)."""
    workdir = tmp_path_factory.mktemp("bad-input")
    with fresh_store_url(backend, workdir) as url:
        lead = {"leadid": LEAD_ID, "modifiedon": "2024-06-01T10:00:00Z", "emailaddress1": "p1@x.example"}
        lines = [line(MARKETO_SCHEMA), *(line(person(i, firstName=f"P{i}")) for i in (1, 2, 3))]
        lines += [line(LEADS_SCHEMA), line({"type": "RECORD", "stream": "dynamics_leads", "record": lead})]
        result = run_target({"store_url": url, "merge": False}, lines, workdir)
        assert result.returncode == 0, result.stderr[-2000:]
        yield url, workdir


@pytest.fixture(scope="module", params=BACKENDS)
def staged_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The staged store on each backend, for what the store decides."""
    with staged(request.param, tmp_path_factory) as store:
        yield store


@pytest.fixture(scope="module")
def sqlite_staged_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The staged store on SQLite only, for input the reader refuses before the store is touched."""
    with staged("sqlite", tmp_path_factory) as store:
        yield store


SCHEMA_LINE = line(MARKETO_SCHEMA)
GOOD_BEFORE = line(person(1, firstName="Changed before the bad line"))  # must not be staged: its batch fails
NEW_BEFORE = line(person(900))
# A tap that declares its replication key as plain text: the SDK does not parse it, staging must.
PLAIN_TIMESTAMP_SCHEMA: dict[str, Any] = copy.deepcopy(MARKETO_SCHEMA)
PLAIN_TIMESTAMP_SCHEMA["schema"]["properties"]["updatedAt"] = {"type": "string"}

# (id, input lines, the fragments the one-line reason must contain)
MALFORMED: list[tuple[str, list[str], list[str]]] = [
    ("not-json", [SCHEMA_LINE, NEW_BEFORE, "this is not json"], ["Singer input line 3", "not a JSON object"]),
    ("truncated-json", [SCHEMA_LINE, '{"type": "RECORD", "stream": "marketo_leads", "rec'], ["line 2", "not a JSON"]),
    ("json-array", [SCHEMA_LINE, "[1, 2]"], ["line 2", "not a JSON object"]),
    (
        "record-before-schema",
        [line(person(5))],
        ["line 1", "stream 'marketo_leads'", "record id=5", "before its stream's SCHEMA"],
    ),
    (
        "unknown-stream",
        [line({**MARKETO_SCHEMA, "stream": "salesforce_leads"})],
        ["line 1", "stream 'salesforce_leads'", "not one target-mktdyn-merge can merge"],
    ),
    (
        "wrong-type-key",
        [SCHEMA_LINE, GOOD_BEFORE, line(person("abc"))],
        ["line 3", "record id=abc", "field 'id'", "'abc' is not of type 'integer'"],
    ),
    (
        "wrong-type-field",
        [SCHEMA_LINE, GOOD_BEFORE, NEW_BEFORE, line(person(7, title=42))],
        ["line 4", "record id=7", "field 'title'", "42 is not of type"],
    ),
    (
        "missing-key",
        [SCHEMA_LINE, GOOD_BEFORE, line({"type": "RECORD", "stream": "marketo_leads", "record": {"email": "k@x"}})],
        ["line 3", "stream 'marketo_leads'", "field 'id'", "no key"],
    ),
    (
        "missing-key-undeclared",
        [
            line({**MARKETO_SCHEMA, "key_properties": []}),
            line({"type": "RECORD", "stream": "marketo_leads", "record": {"updatedAt": "2024-06-02T00:00:00Z"}}),
        ],
        ["stream 'marketo_leads'", "field 'id'", "no key"],
    ),
    (
        "bad-timestamp",
        [SCHEMA_LINE, GOOD_BEFORE, line(person(8) | {"record": {**person(8)["record"], "updatedAt": "yesterday"}})],
        ["line 3", "record id=8", "'yesterday'", "field 'updatedAt'"],
    ),
    (
        "record-not-an-object",
        [SCHEMA_LINE, line({"type": "RECORD", "stream": "marketo_leads", "record": [1, 2]})],
        ["line 2", "stream 'marketo_leads'", "not a valid Singer RECORD"],
    ),
    (
        "schema-without-properties",
        [line({"type": "SCHEMA", "stream": "marketo_leads", "schema": {"type": "object"}})],
        ["line 1", "stream 'marketo_leads'", "properties"],
    ),
    ("message-without-type", [line({"stream": "marketo_leads"})], ["line 1", "type"]),
    (
        "key-too-long",  # a valid JSON integer, but no Marketo id: PostgreSQL's VARCHAR(64) key would overflow
        [SCHEMA_LINE, GOOD_BEFORE, line(person(10**70))],
        ["stream 'marketo_leads'", "field 'id'", "a key of 71 characters", "at most 64"],
    ),
    (
        "timestamp-not-a-date",  # the SDK checks only a declared date-time; staging orders records by it
        [line(PLAIN_TIMESTAMP_SCHEMA), NEW_BEFORE, line(person(9, updatedAt="soon " * 10))],
        ["stream 'marketo_leads'", "record id=9", "field 'updatedAt'", "'soon soon", "is not a date-time"],
    ),
    (
        "lone-surrogate",  # valid JSON, not text: staging would fail encoding it, naming nothing
        [
            SCHEMA_LINE,
            GOOD_BEFORE,
            NEW_BEFORE,
            '{"type": "RECORD", "stream": "marketo_leads", "record": '
            '{"id": 11, "updatedAt": "2024-06-01T10:00:00Z", "title": "a\\ud800b"}}',
        ],
        ["line 4", "stream 'marketo_leads'", "record id=11", "field 'title'", "lone UTF-16 surrogate"],
    ),
    (
        "deep-nesting",
        [
            SCHEMA_LINE,
            '{"type": "RECORD", "stream": "marketo_leads", "record": {"id": 12, "title": '
            + "[" * 5000
            + "]" * 5000
            + "}}",
        ],
        ["line 2", "nested too deeply"],
    ),
]
#: Cases the store decides: valid records precede the bad line in the batch, or staging itself refuses. These
#: run on every backend; the others are refused by the reader before the store is touched (SQLite only).
STORE_DECIDES = {
    "not-json",
    "wrong-type-key",
    "wrong-type-field",
    "missing-key",
    "bad-timestamp",
    "key-too-long",
    "timestamp-not-a-date",
    "lone-surrogate",
}
STORE_CASES = [pytest.param(c[1], c[2], id=c[0]) for c in MALFORMED if c[0] in STORE_DECIDES]
READER_CASES = [pytest.param(c[1], c[2], id=c[0]) for c in MALFORMED if c[0] not in STORE_DECIDES]


@pytest.mark.parametrize(("lines", "expected"), STORE_CASES)
def test_malformed_input_after_valid_records_stops_with_one_line_and_leaves_the_store_intact(
    staged_store: tuple[str, Path], lines: list[str], expected: list[str]
) -> None:
    assert_refused_and_store_intact(staged_store, lines, expected)


@pytest.mark.parametrize(("lines", "expected"), READER_CASES)
def test_malformed_input_the_reader_refuses_stops_with_one_line_and_leaves_the_store_intact(
    sqlite_staged_store: tuple[str, Path], lines: list[str], expected: list[str]
) -> None:
    assert_refused_and_store_intact(sqlite_staged_store, lines, expected)


def assert_refused_and_store_intact(store_at: tuple[str, Path], lines: list[str], expected: list[str]) -> None:
    """Exit 1, one line naming where the input is wrong, no STATE, the store intact and unchanged."""
    url, workdir = store_at
    before = snapshot(url)
    result = run_target({"store_url": url, "merge": False}, lines, workdir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = result.stderr.strip().splitlines()[-1]
    assert reason.startswith("target-mktdyn-merge: Singer input"), reason
    for fragment in expected:
        assert fragment in reason, (fragment, reason)
    assert result.stdout == ""  # no STATE: Meltano's bookmarks stay where the last good run left them
    assert_intact(url)
    assert snapshot(url) == before
    store = Store(url)
    try:
        failed = [run for run in store.runs(3) if run["status"] == "failed"]
        running = [run for run in store.runs(50) if run["status"] == "running"]
    finally:
        store.close()
    assert not running  # a refused run is closed, so `mktdyn report` says why
    if failed and failed[0]["error"]:
        assert "Singer input" in failed[0]["error"]


def test_hostile_values_stage_exactly(staged_store: tuple[str, Path]) -> None:
    """10 KB strings, unicode in every field, OData syntax, commas, NUL: staged as sent, byte for byte.

    A 10 KB "email" that does not compress is staged too, without a matching key: PostgreSQL refuses a btree
    index entry that large, and no system holds such an address to match it with.
    """
    url, workdir = staged_store
    hostile = {
        "email": "o'brien' or 1 eq 1,x@exämple.example",
        "firstName": "Zoë 山田 🙂 \u202e'; DROP TABLE staged; --",
        "lastName": "x" * 10_240,
        "title": "a\x00b\r\nc \"quoted\" ''",
    }
    noise = random.Random(11)
    huge_email = {"email": "".join(noise.choices(string.ascii_letters + string.digits, k=10_240)) + "@x.example"}
    lines = [SCHEMA_LINE, line(person(31337, **hostile)), line(person(31338, **huge_email))]
    result = run_target({"store_url": url, "merge": False}, lines, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    store = Store(url)
    try:
        staged = store.staged_record("marketo_leads", "31337")
        huge = store.staged_record("marketo_leads", "31338")
    finally:
        store.close()
    assert staged is not None
    assert {name: staged.fields[name] for name in hostile} == hostile
    assert staged.email_norm == hostile["email"].casefold()
    assert huge is not None
    assert huge.fields["email"] == huge_email["email"]
    assert huge.email_norm is None
    assert_intact(url)


def test_blank_lines_are_skipped_not_fatal(sqlite_staged_store: tuple[str, Path]) -> None:
    url, workdir = sqlite_staged_store
    lines = ["", SCHEMA_LINE, "   ", line(person(1, firstName="After blank lines")), ""]
    result = run_target({"store_url": url, "merge": False}, lines, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    store = Store(url)
    try:
        staged_person = store.staged_record("marketo_leads", "1")
    finally:
        store.close()
    assert staged_person is not None
    assert staged_person.fields["firstName"] == "After blank lines"


def test_config_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "target.json"
    broken.write_text('{"store_url": ')
    result = run_target(broken, [], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"target-mktdyn-merge: config file {broken} is not valid JSON: Expecting value: line 1 column 15 (char 14)"
    ]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            {"max_record_failures": "many"},
            "target-mktdyn-merge: setting 'max_record_failures': 'many' is not of type 'integer', 'null'",
        ),
        ({"create_in_dynamics": "sometimes"}, "target-mktdyn-merge: setting 'create_in_dynamics': 'sometimes' is not"),
        ({"store_url": "nosuchdb://host/db"}, "target-mktdyn-merge: setting 'store_url': nosuchdb://host/db"),
    ],
    ids=["wrong-type", "unknown-choice", "unknown-store-dialect"],
)
def test_broken_target_config_exits_non_zero_naming_the_setting(
    tmp_path: Path, config: dict[str, Any], fragment: str
) -> None:
    settings = {"store_url": f"sqlite:///{tmp_path / 'store.db'}", "merge": False, **config}
    result = run_target(settings, [SCHEMA_LINE, line(person(1))], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(fragment), result.stderr[-2000:]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("marketo_base_url", "http://123-abc-456.mktorest.com"), ("dynamics_base_url", "http://org.crm.dynamics.com")],
)
def test_merge_refuses_plain_http_to_a_remote_host_before_any_call(
    staged_store: tuple[str, Path], tmp_path: Path, setting: str, value: str
) -> None:
    url, _ = staged_store
    before = snapshot(url)
    config = {
        "store_url": url,
        "merge": True,
        "marketo_base_url": "https://127.0.0.1:9",
        "marketo_client_id": "id",
        "marketo_client_secret": "never-sent-secret",
        "dynamics_base_url": "https://127.0.0.1:9",
        "dynamics_tenant_id": "t",
        "dynamics_client_id": "c",
        "dynamics_client_secret": "never-sent-secret",
        setting: value,
    }
    result = run_target(config, [], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = result.stderr.splitlines()[-1]
    assert f"setting '{setting}'" in reason
    assert "plain http" in reason
    assert result.stderr.count("plain http") == 1  # one line on the merge path, not an ERROR log line as well
    assert_intact(url)
    assert snapshot(url)["staged"] == before["staged"]
