"""Every numeric setting works from the environment, and the store URL's password never shows (issue 22: 4, 8).

Meltano 4.4 crashed on a ``kind: decimal`` setting given by environment variable ("Object of type Decimal is
not JSON serializable", a traceback naming no setting). Each plugin's numeric settings are given by variable
at once, read back through ``meltano config`` and checked against the plugin's own ``config_jsonschema``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from scripts.demo import ROOT
from scripts.meltano_settings import PLUGINS, sdk_builtin_settings

MELTANO = str(Path(sys.executable).parent / "meltano")
PASSWORD = "Pg-pass-7Hq2Wz9"


def numeric_settings(plugin: Any) -> dict[str, dict[str, Any]]:
    """The plugin's own settings whose value is a number (integer, number, or number-or-its-text)."""
    builtin = sdk_builtin_settings(plugin)
    found = {}
    for name, prop in plugin.config_jsonschema["properties"].items():
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        if name not in builtin and {"integer", "number"} & set(types):
            found[name] = prop
    return found


def meltano(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_", "MKTDYN_"))}
    env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(tmp_path / ".meltano"),
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        }
    )
    return env


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_every_numeric_setting_works_from_the_environment(name: str, tmp_path: Path) -> None:
    plugin = PLUGINS[name]
    settings = numeric_settings(plugin)
    assert settings
    prefix = name.upper().replace("-", "_")
    values = {s: ("30" if "integer" in p["type"] else "30.5") for s, p in settings.items()}
    env = {**base_env(tmp_path), **{f"{prefix}_{s.upper()}": v for s, v in values.items()}}
    printed = meltano(env, "config", "print", name)
    assert printed.returncode == 0, printed.stderr[-3000:]
    config = json.loads(printed.stdout)
    for setting, prop in settings.items():
        assert float(config[setting]) == float(values[setting]), setting
        jsonschema.validate(config[setting], prop)  # what the plugin's own validation accepts
    listed = meltano(env, "config", "list", name)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "Traceback" not in listed.stderr


def test_the_store_url_password_is_never_shown(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "MKTDYN_STORE_URL": f"postgresql+psycopg://sync:{PASSWORD}@db.example/mktdyn"}
    for args in (("config", "list", "target-mktdyn-merge"), ("config", "print", "target-mktdyn-merge")):
        result = meltano(env, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "store_url" in result.stdout
        assert PASSWORD not in result.stdout + result.stderr, args
