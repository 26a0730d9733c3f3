"""Where the target's settings come from, resolved the way the run resolves them (light: no plugin imports).

``mktdyn`` needs the store URL on every command and must not pay for importing both API clients to get it;
``check`` needs every setting. Both go through here, so they agree on the precedence: an explicit file, else
(under Meltano, ``MELTANO_PROJECT_ROOT`` set) Meltano's own resolution of the target's configuration, else
``TARGET_MKTDYN_MERGE_<SETTING>`` then the ``MKTDYN_*`` variable meltano.yml maps onto the setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mktdyn_common.errors import MktdynError

from target_mktdyn_merge.store.connection import default_store_url

#: The plugin whose configuration ``check`` and ``mktdyn`` resolve under Meltano.
TARGET_PLUGIN = "target-mktdyn-merge"

#: Environment variables meltano.yml maps onto the target's connection settings.
ENVIRONMENT = {
    "marketo_base_url": "MKTDYN_MARKETO_BASE_URL",
    "marketo_client_id": "MKTDYN_MARKETO_CLIENT_ID",
    "marketo_client_secret": "MKTDYN_MARKETO_CLIENT_SECRET",
    "marketo_ca_bundle": "MKTDYN_MARKETO_CA_BUNDLE",
    "dynamics_base_url": "MKTDYN_DYNAMICS_BASE_URL",
    "dynamics_authority_host": "MKTDYN_DYNAMICS_AUTHORITY_HOST",
    "dynamics_tenant_id": "MKTDYN_DYNAMICS_TENANT_ID",
    "dynamics_client_id": "MKTDYN_DYNAMICS_CLIENT_ID",
    "dynamics_client_secret": "MKTDYN_DYNAMICS_CLIENT_SECRET",
    "dynamics_ca_bundle": "MKTDYN_DYNAMICS_CA_BUNDLE",
    "store_url": "MKTDYN_STORE_URL",
}


def environment_setting(environ: Mapping[str, str], name: str) -> str:
    """One setting's raw value outside Meltano: ``TARGET_MKTDYN_MERGE_<NAME>``, else its ``MKTDYN_*`` variable.

    The SDK's name first, as Meltano gives a setting's own variable precedence over the meltano.yml value that
    reads the ``MKTDYN_*`` variable.
    """
    return environ.get(f"TARGET_MKTDYN_MERGE_{name.upper()}") or environ.get(ENVIRONMENT.get(name, ""), "")


def resolved_store_url(environ: Mapping[str, str]) -> str:
    """The store the run uses, resolved as ``check``'s :func:`~target_mktdyn_merge.ops.check.load_config` would."""
    if environ.get("MELTANO_PROJECT_ROOT"):
        return store_url(meltano_config(environ))
    return store_url({"store_url": environment_setting(environ, "store_url")})


def config_source(path: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Where :func:`load_config` reads from, in words (the first line of ``check``)."""
    environ = environ if environ is not None else os.environ
    if path:
        return f"config file {path}"
    if environ.get("MELTANO_PROJECT_ROOT"):
        environment = environ.get("MELTANO_ENVIRONMENT") or "the default environment"
        return f"Meltano's configuration of {TARGET_PLUGIN} ({environment}) in {environ['MELTANO_PROJECT_ROOT']}"
    return "the MKTDYN_* / TARGET_MKTDYN_MERGE_* environment variables"


def meltano_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """``meltano [--environment E] config --unsafe print --format json target-mktdyn-merge`` in the project.

    Meltano's own resolution (the same it uses to write the target's config file for a run), so there is no
    second implementation of its precedence rules to drift. ``--unsafe``: the check needs the real secrets to
    authenticate; the output goes to this process only.
    """
    root = environ["MELTANO_PROJECT_ROOT"]
    command = _meltano_command(environ)
    if environ.get("MELTANO_ENVIRONMENT"):
        command += ["--environment", environ["MELTANO_ENVIRONMENT"]]
    command += ["config", "--unsafe", "print", "--format", "json", TARGET_PLUGIN]
    try:
        result = subprocess.run(
            command, cwd=root, env=dict(environ), capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MktdynError(f"cannot run {command[0]} to read {TARGET_PLUGIN}'s configuration: {exc}") from exc
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise MktdynError(
            f"`meltano config print {TARGET_PLUGIN}` failed in {root} (exit {result.returncode}): "
            f"{lines[-1] if lines else 'no output'}"
        )
    try:
        config = json.loads(result.stdout)
    except ValueError as exc:
        raise MktdynError(f"`meltano config print {TARGET_PLUGIN}` printed no JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise MktdynError(f"`meltano config print {TARGET_PLUGIN}` printed {type(config).__name__}, not an object")
    return config


def _meltano_command(environ: Mapping[str, str]) -> list[str]:
    """The Meltano that invoked this command, else Meltano next to this interpreter, else the one on PATH.

    Under ``meltano invoke mktdyn`` the utility runs in its own virtualenv (``meltano install``), where no
    Meltano is installed and which the user's PATH need not reach (``.venv/bin/meltano invoke ...``); the
    parent process is that Meltano, so its command line names it (Linux ``/proc``; elsewhere the fallbacks).
    """
    invoking = _invoking_meltano()
    if invoking:
        return invoking
    sibling = Path(sys.executable).parent / "meltano"
    if sibling.is_file():
        return [str(sibling)]
    found = shutil.which("meltano", path=environ.get("PATH"))
    if found is None:
        raise MktdynError("cannot find the meltano executable to read the project's configuration; pass --config")
    return [found]


def _invoking_meltano() -> list[str] | None:
    """The parent process's Meltano command (``/path/meltano`` or ``python -m meltano``), if it is one."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    for index, arg in enumerate(argv[:3]):
        if Path(arg).name == "meltano" and Path(arg).is_file() and os.access(arg, os.X_OK):
            return [arg]
        if arg == "-m" and index + 1 < len(argv) and argv[index + 1] == "meltano":
            return [argv[0], "-m", "meltano"]
    return None


def store_url(config: Mapping[str, Any]) -> str:
    """The store the run uses: the resolved ``store_url`` setting, else the target's default.

    ``mktdyn`` and ``check`` both resolve it here (after an explicit ``--store-url``), with the precedence of
    :func:`load_config`, so they always name the store the scheduled run writes.
    """
    return str(config.get("store_url") or "").strip() or default_store_url()
