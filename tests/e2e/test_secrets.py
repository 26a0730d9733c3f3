"""Secrets appear nowhere: the real Meltano job at DEBUG, then every place a secret could leak (issue 11).

The sandbox is given distinctive secrets (its ``credentials.json`` is written before it starts), so a
search for them cannot miss a leak hidden behind a random token: Meltano's and every plugin's output at
DEBUG, every text column of every table of the store, the activity log as exported, Meltano's state, and
the text and traceback of the errors a refused credential raises.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from mktdyn_sandbox.plugin_config import meltano_env
from mktdyn_sandbox.sandbox import Sandbox
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store

from scripts.demo import ROOT
from scripts.meltano_plugins import use_installed_plugins
from tests.target.pipeline import connection_config

pytestmark = pytest.mark.e2e
MELTANO = str(Path(sys.executable).parent / "meltano")
CREDENTIALS = {
    "marketo_client_id": "mktdyn-test-marketo-client",
    "marketo_client_secret": "SECRET-marketo-9f3kQ7vX2b",
    "dynamics_tenant_id": "0b5e6f0a-55c1-4e8f-9a39-5a5f3f2b9d11",
    "dynamics_client_id": "2f0c8a34-9a7c-4bd4-8b1e-8c9b0a1d2e3f",
    "dynamics_client_secret": "SECRET-dynamics-Lp2x8Wq4Zt",
    "dynamics_username": "sync.user@contoso.example",
    "dynamics_password": "SECRET-password-Zr4Yh7Nc1",
}
WRONG = {"marketo_client_secret": "SECRET-wrong-marketo-Qa1", "dynamics_client_secret": "SECRET-wrong-dynamics-Pb2"}
SECRETS = [CREDENTIALS["marketo_client_secret"], CREDENTIALS["dynamics_client_secret"], *WRONG.values()]
SECRETS.append(CREDENTIALS["dynamics_password"])


def leaks(text: str) -> list[str]:
    """The secrets found in ``text`` (also percent-encoded, as a form body or URL would carry them)."""
    return [s for s in SECRETS if s in text or s.replace("-", "%2D") in text]


def meltano(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def store_text(url: str) -> str:
    """Every value of every table of the store, as text."""
    store = Store(url)
    parts: list[str] = []
    try:
        with store.transaction() as connection:
            for table in tables.metadata.sorted_tables:
                parts.extend(repr(tuple(row)) for row in connection.execute(sa.select(table)).all())
            run = store.last_run("merge")
        assert run is not None
        parts.extend(json.dumps(a, default=str) for a in iter_activities(store, run))
    finally:
        store.close()
    return "\n".join(parts)


def test_no_secret_reaches_logs_store_activity_log_state_or_errors(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "sandbox"
    directory.mkdir()
    (directory / "credentials.json").write_text(json.dumps(CREDENTIALS))
    sandbox = make_sandbox(directory=directory, persons=25, dynamics_only=5, overlap=0.6, seed=5)
    assert sandbox.info["marketo_client_secret"] == CREDENTIALS["marketo_client_secret"]
    env = {**meltano_env(sandbox.info, tmp_path / "project"), "LOGLEVEL": "DEBUG"}
    use_installed_plugins(Path(env["MELTANO_SYS_DIR_ROOT"]))
    env["MELTANO_CLI_LOG_LEVEL"] = "debug"

    run = meltano(env, "--log-level=debug", "run", "sync")
    # The plugins really logged at DEBUG: urllib3's request lines (token requests included) are there.
    assert '"POST /identity/oauth/token HTTP/1.1" 200' in run.stderr
    assert "[debug" in run.stderr
    assert leaks(run.stdout + run.stderr) == []
    assert leaks(store_text(env["MKTDYN_STORE_URL"])) == []
    state_ids = meltano(env, "state", "list").stdout.split()
    assert len(state_ids) == 2
    for state_id in state_ids:
        assert leaks(meltano(env, "state", "get", state_id).stdout) == []
    for path in (tmp_path / "project").rglob("*"):  # Meltano's own logs and database
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert leaks(path.read_bytes().decode("utf-8", "replace")) == [], path

    # The job with refused credentials: non-zero, naming the API's code, never the secret it was given.
    refused = {**env, "MKTDYN_DYNAMICS_CLIENT_SECRET": WRONG["dynamics_client_secret"]}
    failed = meltano(refused, "--log-level=debug", "run", "tap-dynamics-leads", "target-mktdyn-merge", check=False)
    assert failed.returncode != 0
    assert leaks(failed.stdout + failed.stderr) == []

    # The clients' own errors, with DEBUG logging of every library (urllib3 logs request lines).
    caplog.set_level(logging.DEBUG)
    config = {**connection_config(sandbox.info), **{f"{k}": v for k, v in WRONG.items()}}
    clients = [
        lambda: MarketoClient(MarketoConnection.from_config(config, "marketo_")).describe_leads(),
        lambda: DataverseClient(DataverseConnection.from_config(config, "dynamics_")).attributes("lead"),
    ]
    for call in clients:
        with pytest.raises(MktdynError) as caught:
            call()
        text = "".join(traceback.format_exception(caught.value)) + repr(caught.value.args)
        assert "401" in text or "auth" in text.lower() or "invalid_client" in text
        assert leaks(text) == []
    assert leaks(caplog.text) == []
