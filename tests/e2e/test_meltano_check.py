"""``meltano invoke mktdyn check`` checks what the run will use: the target's configuration as Meltano resolves it.

A copy of this project's meltano.yml in a temporary directory (its ``.venv`` linked in) gets a field map or a
store URL written in meltano.yml itself, where the ``MKTDYN_*`` variables cannot show them. ``check`` must fail
on the bogus field map, naming it, and ``mktdyn`` must read the store that meltano.yml names, as the run would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox

from scripts.demo import ROOT
from scripts.meltano_plugins import use_installed_plugins

pytestmark = pytest.mark.e2e
MELTANO = str(Path(sys.executable).parent / "meltano")


def project_with(tmp_path: Path, target_config: dict[str, Any]) -> Path:
    """A Meltano project like this one, with ``target_config`` added to the target's config in meltano.yml."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".venv").symlink_to(ROOT / ".venv")
    definition = yaml.safe_load((ROOT / "meltano.yml").read_text())
    target = next(p for p in definition["plugins"]["loaders"] if p["name"] == "target-mktdyn-merge")
    target["config"].update(target_config)
    for group in definition["plugins"].values():  # the same install args as this project's, so Meltano never
        for plugin in group:  # takes the shared virtualenvs for stale and reinstalls them from the copy
            if "pip_url" in plugin:
                plugin["pip_url"] = plugin["pip_url"].replace("${MELTANO_PROJECT_ROOT}", str(ROOT))
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    return project


def invoke(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    use_installed_plugins(Path(env["MELTANO_SYS_DIR_ROOT"]))  # the plugins `meltano install` installed once
    return subprocess.run(
        [MELTANO, "invoke", "mktdyn", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


def test_check_under_meltano_fails_on_a_field_map_written_in_meltano_yml(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(persons=10, dynamics_only=2)
    project = project_with(tmp_path, {"field_map": {"lead": {"title": {"dynamics": "jobtitel"}}}})
    result = invoke(project, meltano_env(sandbox.info, tmp_path), "check")
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "Configuration: Meltano's configuration of target-mktdyn-merge (sandbox)" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert "field map fits both systems' metadata" in failed[0]
    assert "jobtitel" in failed[0]
    assert sandbox.info["dynamics_client_secret"] not in result.stdout + result.stderr


def test_check_and_mktdyn_use_the_store_url_meltano_resolves(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(persons=10, dynamics_only=2)
    from_yml = tmp_path / "named-in-meltano-yml.db"
    project = project_with(tmp_path, {"store_url": f"sqlite:///{from_yml}"})
    env = meltano_env(sandbox.info, tmp_path)  # its MKTDYN_STORE_URL names another store: meltano.yml wins
    assert str(from_yml) not in env["MKTDYN_STORE_URL"]
    checked = invoke(project, env, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    assert "All checks passed." in checked.stdout
    assert f"no store at sqlite:///{from_yml}" in checked.stdout
    status = invoke(project, env, "status")
    assert status.returncode == 1
    assert f"mktdyn: no store at sqlite:///{from_yml}" in status.stderr
    assert not from_yml.exists()
