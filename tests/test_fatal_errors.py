"""A fatal error ends a tap with one line on stderr naming what to fix, never a traceback (docs/architecture.md §9.5).

Both taps run as Meltano runs them, through their console scripts. Whatever stops them (a config file that is
not JSON, a setting left out, a spent quota, credentials refused), stderr ends with exactly one line
``<tap>: <reason>`` naming the file, the setting or the API's code (and, for a quota, when to retry); the only
other lines are the SDK's ordinary log lines; the exit code is non-zero; no secret value is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mktdyn_common.cli import describe_config_problem
from mktdyn_sandbox.sandbox import Sandbox

from tests.tap_dynamics.helpers import tap_config as dynamics_config
from tests.tap_marketo.tapcli import tap_config as marketo_config

BIN = Path(sys.executable).parent
MARKETO, DYNAMICS = "tap-marketo-leads", "tap-dynamics-leads"
#: A line of the SDK's console log (``2026-01-02 10:00:00,123 | INFO     | logger | message``).
SDK_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} \| [A-Z]+ +\| ")
SMALL_SANDBOX: dict[str, Any] = {"persons": 10, "dynamics_only": 2}

MakeSandbox = Callable[..., Sandbox]


def config_for(tap: str, info: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    config = marketo_config(info) if tap == MARKETO else dynamics_config(info)
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def run(
    tap: str, tmp_path: Path, config: dict[str, Any] | str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{tap}.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return subprocess.run(
        [str(BIN / tap), "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def reason(result: subprocess.CompletedProcess[str]) -> str:
    """The one line that says why the plugin stopped: the last line, and the only one that is not a log line."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    own = [line for line in lines if not SDK_LOG_LINE.match(line)]
    assert own == lines[-1:], result.stderr[-3000:]
    return own[0]


@pytest.mark.parametrize("tap", [MARKETO, DYNAMICS])
def test_a_config_file_that_is_not_json_is_named(tap: str, tmp_path: Path) -> None:
    result = run(tap, tmp_path, '{"base_url": ')
    assert result.returncode == 2
    assert reason(result) == (
        f"{tap}: config file {tmp_path / tap}.json is not valid JSON: Expecting value: line 1 column 14 (char 13)"
    )
    assert result.stdout == ""


def test_a_config_file_that_is_missing_or_not_an_object_is_named(tmp_path: Path) -> None:
    tap = MARKETO
    missing = subprocess.run(
        [str(BIN / tap), "--config", str(tmp_path / "nowhere.json")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    assert reason(missing) == f"{tap}: config file {tmp_path / 'nowhere.json'} does not exist"
    listed = run(tap, tmp_path, "[1, 2]")
    assert listed.returncode == 2
    assert reason(listed) == f"{tap}: config file {tmp_path / tap}.json is not a JSON object (it holds a list)"


@pytest.mark.parametrize(("tap", "setting"), [(MARKETO, "client_secret"), (DYNAMICS, "tenant_id")])
def test_a_missing_required_setting_is_named(
    tap: str, setting: str, sandbox_info: dict[str, Any], tmp_path: Path
) -> None:
    config = config_for(tap, sandbox_info, **{setting: None})
    result = run(tap, tmp_path, config)
    assert result.returncode == 1
    assert reason(result) == f"{tap}: setting '{setting}': is required"
    assert sandbox_info["dynamics_client_secret"] not in result.stderr
    assert result.stdout == ""


def test_a_secret_of_the_wrong_type_is_named_but_not_shown(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    tap = DYNAMICS
    result = run(tap, tmp_path, config_for(tap, sandbox_info, client_secret=4815162342))
    assert result.returncode == 1
    line = reason(result)
    assert line.startswith(f"{tap}: setting 'client_secret': *** is not of type 'string'"), line
    assert "4815162342" not in result.stderr


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_a_state_or_catalog_file_that_is_not_json_is_named(
    option: str, sandbox_info: dict[str, Any], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{'bookmarks': {}}")
    result = run(MARKETO, tmp_path, config_for(MARKETO, sandbox_info), option, str(broken))
    assert result.returncode == 2
    kind = option.removeprefix("--")
    assert reason(result).startswith(f"{MARKETO}: {kind} file {broken} is not valid JSON: Expecting property name")


@pytest.mark.parametrize(
    ("spec", "args", "fragments"),
    [
        ("marketo.607=1", (), ["leads/describe.json", "error 607", "retry after midnight US Central time"]),
        ("marketo.607=1", ("--discover",), ["leads/describe.json", "error 607", "retry after midnight"]),
        ("marketo.1029=1", (), ["export/create.json", "error 1029", "retry after the queued bulk exports"]),
    ],
    ids=["607-run", "607-discover", "1029-export"],
)
def test_a_spent_marketo_quota_names_the_code_and_when_to_retry(
    make_sandbox: MakeSandbox, tmp_path: Path, spec: str, args: tuple[str, ...], fragments: list[str]
) -> None:
    info = make_sandbox(faults=spec, **SMALL_SANDBOX).info
    result = run(MARKETO, tmp_path, config_for(MARKETO, info), *args)
    assert result.returncode == 1
    line = reason(result)
    assert line.startswith(f"{MARKETO}: Marketo "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert info["marketo_client_secret"] not in result.stderr
    assert result.stdout.count('"type": "RECORD"') == 0


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("dynamics.401=1", ["error http_401 (HTTP 401)", "refused the identity of setting 'client_id'"]),
        ("dynamics.429=1", ["(HTTP 429)", "after 7 attempts", "service protection limit: retry after 1 s"]),
    ],
    ids=["401-authentication", "429-service-protection"],
)
def test_dataverse_refusals_name_the_code_and_what_to_do(
    make_sandbox: MakeSandbox, tmp_path: Path, spec: str, fragments: list[str]
) -> None:
    info = make_sandbox(faults=spec, **SMALL_SANDBOX).info
    result = run(DYNAMICS, tmp_path, config_for(DYNAMICS, info))
    assert result.returncode == 1
    line = reason(result)
    assert line.startswith(f"{DYNAMICS}: Dataverse GET EntityDefinitions"), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert info["dynamics_client_secret"] not in result.stderr


BROKEN_TAP = """
import sys
from mktdyn_common.cli import run_plugin
from singer_sdk import Tap

class TapBroken(Tap):
    name = "tap-broken"
    config_jsonschema = {"type": "object", "properties": {}}

    def discover_streams(self):
        raise KeyError("a bug, not a user's mistake")

sys.exit(run_plugin(TapBroken))
"""


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_an_unexpected_bug_is_one_line_with_its_type_and_the_traceback_only_at_debug(level: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_TAP, "--discover"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOGLEVEL": level},
    )
    assert result.returncode == 1
    expected = 'tap-broken: unexpected KeyError: "a bug, not a user\'s mistake"'
    if level == "DEBUG":
        assert "Traceback" in result.stderr
        assert result.stderr.strip().splitlines()[-1] == expected
    else:
        assert reason(result) == expected


@pytest.mark.parametrize(
    ("problem", "described"),
    [
        ("'client_secret' is a required property", "setting 'client_secret': is required"),
        (
            "'many' is not of type 'integer', 'null' in config['max_record_failures']",
            "setting 'max_record_failures': 'many' is not of type 'integer', 'null'",
        ),
        (
            "'x' is not one of ['a', 'b'] in config['field_map']['lead']",
            "setting 'field_map.lead': 'x' is not one of ['a', 'b']",
        ),
        ("setting 'base_url': plain http is refused", "setting 'base_url': plain http is refused"),
    ],
)
def test_the_sdks_validation_errors_read_as_settings(problem: str, described: str) -> None:
    assert describe_config_problem(problem) == described
