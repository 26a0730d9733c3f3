"""The README's sandbox recipe: ``eval "$(mktdyn-sandbox env DIR)"``, then ``meltano`` commands reach the sandbox.

Only the variables ``mktdyn-sandbox env`` prints are set (every ``MKTDYN_*`` of the test environment is removed
first), so a variable it misnames (the CA bundle once was) shows up as a TLS failure here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox

from scripts.demo import ROOT

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def recipe_shell(sandbox: Sandbox, project_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a shell after evaluating the sandbox's env output, as the README says."""
    env = {k: v for k, v in meltano_env(sandbox.info, project_dir).items() if not k.startswith("MKTDYN_")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["MKTDYN_STORE_URL"] = f"sqlite:///{project_dir / 'store.db'}"
    script = f'set -e\neval "$(mktdyn-sandbox env {shlex.quote(str(sandbox.directory))})"\n{command}\n'
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_env_output_sets_the_ca_bundle_variables_meltano_yml_reads(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    printed = recipe_shell(sandbox, tmp_path, 'echo "$MKTDYN_MARKETO_CA_BUNDLE|$MKTDYN_DYNAMICS_CA_BUNDLE"')
    assert printed.returncode == 0, printed.stderr
    ca = sandbox.info["ca_bundle"]
    assert printed.stdout.strip() == f"{ca}|{ca}"


@pytest.mark.parametrize("tap", ["tap-marketo-leads", "tap-dynamics-leads"])
def test_a_meltano_command_after_the_env_recipe_reaches_the_sandbox(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, tap: str
) -> None:
    sandbox = make_sandbox()
    result = recipe_shell(sandbox, tmp_path, f"meltano --environment sandbox invoke {tap} --discover")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CERTIFICATE_VERIFY_FAILED" not in result.stderr
    assert '"streams"' in result.stdout


def test_mktdyn_check_under_meltano_passes_after_the_env_recipe(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    result = recipe_shell(sandbox, tmp_path, "meltano --environment sandbox invoke mktdyn check")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Configuration: Meltano's configuration of target-mktdyn-merge (sandbox)" in result.stdout
    assert "All checks passed." in result.stdout
