"""The real-time path end to end: a sandbox, a store, `mktdyn serve` as a real process, the sandbox's webhook.

Nothing is simulated: the sandbox fires its Call Webhook step at the running service over real HTTP, the
service syncs through the sandbox's REST and Web APIs, and the assertions read both systems back through the
sandbox and the store through its own modules.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.marketo.testing import WebhookAdmin
from mktdyn_sandbox.plugin_config import target_connections
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store

BIN = Path(sys.executable).parent
SECRET = "s3cret-header-value-for-tests"
HEADER = "X-Mktdyn-Secret"
WEBHOOK = "Sync Person to Microsoft"
#: The payload template an admin writes in Marketo (string tokens are quoted by Marketo).
TEMPLATE = '{"personId": {{lead.Id}}, "email": {{lead.Email Address}}, "campaignId": {{campaign.id}}}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Serve:
    """One `mktdyn serve` process."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> None:
        """SIGTERM (graceful), then wait."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no answer, whatever it was doing."""
        self.process.kill()
        self.process.wait()


@dataclass
class Realtime:
    """A sandbox, a store, a config with a secret, and helpers to drive and inspect them."""

    info: dict[str, Any]
    workdir: Path
    config: dict[str, Any] = field(default_factory=dict)
    served: list[Serve] = field(default_factory=list)
    store_url: str = ""  # empty: a SQLite file in the work directory

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_url = self.store_url or f"sqlite:///{self.workdir / 'store.db'}"
        self.config = {
            **target_connections(self.info),
            "store_url": self.store_url,
            "serve_secret": SECRET,
            "serve_answer_wait_seconds": 20,
            "marketo_activity_type": "mktdynSync",
            **self.config,
        }
        self.admin = SandboxAdmin(self.info)
        self.hooks = WebhookAdmin(self.info)
        self.marketo = MarketoClient(MarketoConnection.from_config(self.config, "marketo_"))
        self.dynamics = DataverseClient(DataverseConnection.from_config(self.config, "dynamics_"))
        self.mktdyn("db", "upgrade")

    def close(self) -> None:
        for serve in self.served:
            serve.stop()
        self.admin.close()
        self.hooks.close()
        self.marketo.close()
        self.dynamics.close()

    # -- processes ------------------------------------------------------------------------------
    def config_file(self, **overrides: Any) -> Path:
        path = self.workdir / f"config-{len(list(self.workdir.glob('config-*.json')))}.json"
        path.write_text(json.dumps({**self.config, **overrides}))
        return path

    def mktdyn(self, *args: str, config: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `mktdyn` command on this store."""
        command = [str(BIN / "mktdyn"), "--store-url", self.store_url, *args]
        if config is not None:
            command += ["--config", str(config)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, result.stderr[-3000:]
        return result

    def serve(self, port: int | None = None, **overrides: Any) -> Serve:
        """Start `mktdyn serve` and wait until it answers /healthz."""
        port = port or free_port()
        log = self.workdir / f"serve-{len(self.served)}.log"
        command = [str(BIN / "mktdyn"), "--store-url", self.store_url, "serve", "--port", str(port)]
        command += ["--config", str(self.config_file(**overrides))]
        env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        with log.open("w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        serve = Serve(process, f"http://127.0.0.1:{port}", log)
        self.served.append(serve)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{serve.url}/healthz", timeout=1).status_code == 200:
                    return serve
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"mktdyn serve did not start:\n{log.read_text()[-3000:]}")

    # -- the webhook ----------------------------------------------------------------------------
    def define_webhook(self, serve: Serve, secret: str = SECRET, template: str = TEMPLATE, name: str = WEBHOOK) -> None:
        status, body = self.hooks.define(
            {
                "name": name,
                "url": f"{serve.url}/webhook/sync-person",
                "template": template,
                "headers": {HEADER: secret},
                "response_mappings": [{"attribute": "dynamicsLeadId", "field": "dynamicsLeadId"}],
            }
        )
        assert status == 200, body

    def trigger(self, persons: list[int], name: str = WEBHOOK, concurrency: int = 1) -> list[dict[str, Any]]:
        status, body = self.hooks.trigger(name, persons, {"id": "1001", "name": "Sync on form fill"}, concurrency)
        assert status == 200, body
        outcomes: list[dict[str, Any]] = body["outcomes"]
        return outcomes

    # -- data -----------------------------------------------------------------------------------
    def new_person(self, email: str, first: str = "Ada", last: str = "Realtime") -> int:
        """A person created in Marketo now (not in the store)."""
        record = {"email": email, "firstName": first, "lastName": last}
        outcomes = self.marketo.sync_leads("createOnly", [record], "email")
        assert outcomes[0].status == "created", outcomes
        return int(str(outcomes[0].id))

    def new_lead(self, email: str, last: str = "Existing", subject: str = "Already here") -> str:
        """A lead created in Dynamics now."""
        row = self.dynamics.create("leads", {"emailaddress1": email, "lastname": last, "subject": subject}, ["leadid"])
        return str(row["leadid"])

    def leads_with(self, email: str) -> list[dict[str, Any]]:
        return self.dynamics.find_by_email("leads", email, ["leadid", "lastname", "subject", "modifiedon"])

    def lead(self, lead_id: str) -> dict[str, Any]:
        row = self.dynamics.get("leads", lead_id, ["leadid", "jobtitle", "telephone1", "lastname", "subject"])
        assert row is not None
        return row

    def person(self, person_id: int) -> dict[str, Any]:
        record = self.admin.marketo.record("person", person_id)
        assert record is not None
        return record

    def activities(self, person_id: int) -> list[dict[str, Any]]:
        store = Store(self.store_url)
        try:
            return [a for a in iter_activities(store) if a["person_id"] == str(person_id)]
        finally:
            store.close()

    def run_mode(self, run_id: str) -> str:
        """The mode of a run of the store (``merge``, ``realtime``, ...)."""
        store = Store(self.store_url)
        try:
            [run] = [r for r in store.runs(1000) if r["run_id"] == run_id]
            return str(run["mode"])
        finally:
            store.close()

    def queued(self, person_id: int | None = None) -> list[dict[str, Any]]:
        """Rows of the request queue (of one person)."""
        import sqlalchemy as sa
        from target_mktdyn_merge.store import schema as tables

        store = Store(self.store_url)
        try:
            with store.transaction() as connection:
                rows = connection.execute(sa.select(tables.realtime_requests)).all()
            found = [dict(row._mapping) for row in rows]
            return [r for r in found if person_id is None or r["person_id"] == str(person_id)]
        finally:
            store.close()
