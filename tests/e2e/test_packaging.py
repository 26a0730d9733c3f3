"""The plugins as somebody else installs them: one `pip install` from a checkout, the wheels of `make dist`,
`meltano install` in this project, and a different Meltano project adding the taps by `pip_url`.

Each builds fresh virtualenvs with uv (from its cache when warm): tens of seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.plugin_config import start_date
from mktdyn_sandbox.sandbox import Sandbox

from scripts.meltano_plugins import ROOT

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
PLUGINS = ("tap-marketo-leads", "tap-dynamics-leads", "target-mktdyn-merge")


def run(*args: str | Path, timeout: float = 240, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result  # type: ignore[no-any-return]


def clean_venv(directory: Path) -> Path:
    """A virtualenv with pip and nothing of this workspace; returns its pip.

    pip, not uv: uv would find the workspace above a package and resolve its siblings from there, which is
    exactly what pip (and every other installer) cannot do.
    """
    run(sys.executable, "-m", "venv", directory)
    return directory / "bin" / "pip"


def meltano_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "MKTDYN_"))}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", MELTANO_PROJECT_ROOT=str(project))
    return env


def test_a_tap_installs_with_one_pip_install_from_a_checkout(tmp_path: Path) -> None:
    pip = clean_venv(tmp_path / "venv")
    run(pip, "install", "--quiet", ROOT / "tap-dynamics-leads")
    about = json.loads(run(tmp_path / "venv" / "bin" / "tap-dynamics-leads", "--about", "--format", "json").stdout)
    assert about["name"] == "tap-dynamics-leads"
    assert "stream-maps" in about["capabilities"]
    installed = run(pip, "list", "--format", "json").stdout
    assert "mktdyn-common" in {p["name"] for p in json.loads(installed)}


def test_make_dist_wheels_install_by_name_with_no_path_of_this_machine(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(
        BIN / "uv", "build", "--all-packages", "--wheel", "--quiet", "--out-dir", dist,
        cwd=ROOT, env={**os.environ, "MKTDYN_REQUIRE_BY_NAME": ""},
    )  # fmt: skip
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 5
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                assert str(ROOT).encode() not in archive.read(name), f"{wheel.name}:{name} names this checkout"
    pip = clean_venv(tmp_path / "venv")
    run(pip, "install", "--quiet", "--find-links", dist, "target-mktdyn-merge")
    for executable in (*PLUGINS, "mktdyn"):
        assert (tmp_path / "venv" / "bin" / executable).exists(), executable
    about = json.loads(run(tmp_path / "venv" / "bin" / "target-mktdyn-merge", "--about", "--format", "json").stdout)
    assert about["name"] == "target-mktdyn-merge"


def test_meltano_install_installs_every_plugin_of_this_project(tmp_path: Path) -> None:
    env = {**meltano_env(ROOT), "MELTANO_SYS_DIR_ROOT": str(tmp_path / ".meltano")}
    result = run(BIN / "meltano", "install", cwd=ROOT, env=env)
    log = result.stdout + result.stderr
    assert "not installable" not in log
    assert "Installed 4/5 plugins" in log, log[-2000:]  # target-mktdyn-stage reuses target-mktdyn-merge's venv
    for plugin_dir, executable in (
        ("extractors/tap-marketo-leads", "tap-marketo-leads"),
        ("extractors/tap-dynamics-leads", "tap-dynamics-leads"),
        ("loaders/target-mktdyn-merge", "target-mktdyn-merge"),
        ("utilities/mktdyn", "mktdyn"),
    ):
        assert (tmp_path / ".meltano" / plugin_dir / "venv" / "bin" / executable).exists(), plugin_dir
    invoked = run(BIN / "meltano", "invoke", "target-mktdyn-stage", "--about", "--format", "json", cwd=ROOT, env=env)
    assert json.loads(invoked.stdout)["name"] == "target-mktdyn-merge"


def test_another_meltano_project_runs_the_taps_into_target_jsonl(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    persons = 25
    sandbox = make_sandbox(persons=persons, dynamics_only=5, overlap=0.5, seed=7)
    info = sandbox.info
    project = tmp_path / "elsewhere"
    project.mkdir()
    assert not project.resolve().is_relative_to(ROOT)
    definition = {
        "default_environment": "dev",
        "project_id": "mktdyn-packaging-test",
        "send_anonymous_usage_stats": False,
        "environments": [{"name": "dev"}],
        "plugins": {
            "extractors": [
                {
                    "name": "tap-marketo-leads",
                    "namespace": "tap_marketo_leads",
                    "pip_url": str(ROOT / "tap-marketo-leads"),
                    "capabilities": ["catalog", "discover", "state", "about", "stream-maps"],
                    "config": {
                        "base_url": info["marketo_url"],
                        "client_id": info["marketo_client_id"],
                        "client_secret": "$MARKETO_CLIENT_SECRET",
                        "ca_bundle": info["ca_bundle"],
                        "start_date": start_date(),
                        "poll_interval_seconds": 0.2,
                    },
                },
                {
                    "name": "tap-dynamics-leads",
                    "namespace": "tap_dynamics_leads",
                    "pip_url": str(ROOT / "tap-dynamics-leads"),
                    "capabilities": ["catalog", "discover", "state", "about", "stream-maps"],
                },
            ],
            "loaders": [
                {
                    "name": "target-jsonl",
                    "namespace": "target_jsonl",
                    "pip_url": "target-jsonl",
                    "config": {"destination_path": "output", "do_timestamp_file": False},
                }
            ],
        },
    }
    (project / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    (project / "output").mkdir()
    env = {**meltano_env(project), "MARKETO_CLIENT_SECRET": info["marketo_client_secret"]}
    installed = run(BIN / "meltano", "install", cwd=project, env=env, timeout=400)
    assert "Installed 3/3 plugins" in installed.stdout + installed.stderr
    run(BIN / "meltano", "run", "tap-marketo-leads", "target-jsonl", cwd=project, env=env, timeout=400)

    lines = (project / "output" / "marketo_leads.jsonl").read_text().splitlines()
    ids = {json.loads(line)["id"] for line in lines}
    assert len(ids) == persons
    admin = SandboxAdmin(info)
    try:
        for person_id in ids:
            assert admin.marketo.record("person", person_id) is not None
    finally:
        admin.close()
