"""Start and stop both sandbox servers, in-process or from the CLI, and describe them in sandbox.json."""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mktdyn_sandbox.app import Credentials, SandboxApp, SandboxContext
from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.faults import FaultInjector
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.tls import ensure_client_certificate, ensure_tls
from mktdyn_sandbox.web import HttpServer

logger = logging.getLogger(__name__)

SANDBOX_JSON = "sandbox.json"


@dataclass
class SandboxOptions:
    """The ``serve`` flags of docs/architecture.md §9.2."""

    directory: Path
    persons: int = 1000
    dynamics_only: int = 200
    overlap: float = 0.6
    seed: int = 1
    faults: str = ""
    limits: bool = True
    export_delay: float = 1.0
    marketo_port: int = 0
    dynamics_port: int = 0
    host: str = "127.0.0.1"
    extra: dict[str, Any] = field(default_factory=dict)


def _load_credentials(directory: Path) -> Credentials:
    """Credentials kept under DIR, created on first start so a restart keeps them."""
    path = directory / "credentials.json"
    if path.exists():
        return Credentials(**json.loads(path.read_text()))
    credentials = Credentials(
        marketo_client_id=str(uuid.uuid4()),
        marketo_client_secret=secrets.token_urlsafe(24),
        dynamics_tenant_id=str(uuid.uuid4()),
        dynamics_client_id=str(uuid.uuid4()),
        dynamics_client_secret=secrets.token_urlsafe(30),
        dynamics_username="sync.user@contoso.example",
        dynamics_password=secrets.token_urlsafe(16),
    )
    path.write_text(json.dumps(asdict(credentials), indent=2))
    path.chmod(0o600)
    return credentials


class Sandbox:
    """Both API servers of one sandbox, sharing a clock, a fault injector and a directory."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.directory = options.directory.resolve()
        self.info: dict[str, Any] = {}
        self.marketo: SandboxApp | None = None
        self.dynamics: SandboxApp | None = None
        self._servers: list[HttpServer] = []

    def start(self) -> dict[str, Any]:
        """Generate TLS material, seed on first start, serve, and write sandbox.json; return its content."""
        from mktdyn_sandbox.dataverse.app import DataverseApp
        from mktdyn_sandbox.marketo.app import MarketoApp

        options = self.options
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / SANDBOX_JSON).unlink(missing_ok=True)
        tls = ensure_tls(self.directory)
        client_certificate = ensure_client_certificate(self.directory)
        credentials = _load_credentials(self.directory)
        clock = SandboxClock()
        context = SandboxContext(
            directory=self.directory,
            clock=clock,
            faults=FaultInjector(options.faults, options.seed),
            credentials=credentials,
            limits=options.limits,
            export_delay=options.export_delay,
            seed=options.seed,
        )
        self.marketo = MarketoApp(context)
        self.dynamics = DataverseApp(context)
        ssl_context = tls.server_context()
        marketo_server = HttpServer(self.marketo, options.host, options.marketo_port, ssl_context)
        dynamics_server = HttpServer(self.dynamics, options.host, options.dynamics_port, ssl_context)
        self.marketo.base_url = marketo_server.base_url
        self.dynamics.base_url = dynamics_server.base_url
        plan = SeedPlan(
            options.persons,
            options.dynamics_only,
            options.overlap,
            options.seed,
            base_time=clock.now().replace(tzinfo=None),
        )
        for app in (self.marketo, self.dynamics):
            if not app.is_seeded():
                app.seed(plan)
        for server in (marketo_server, dynamics_server):
            server.start()
            self._servers.append(server)
        self.info = {
            "marketo_url": marketo_server.base_url,
            "marketo_client_id": credentials.marketo_client_id,
            "marketo_client_secret": credentials.marketo_client_secret,
            "dynamics_url": dynamics_server.base_url,
            "dynamics_authority": dynamics_server.base_url,
            "dynamics_tenant_id": credentials.dynamics_tenant_id,
            "dynamics_client_id": credentials.dynamics_client_id,
            "dynamics_client_secret": credentials.dynamics_client_secret,
            "dynamics_username": credentials.dynamics_username,
            "dynamics_password": credentials.dynamics_password,
            "dynamics_client_certificate_path": str(client_certificate.path),
            "dynamics_client_certificate_thumbprint": client_certificate.thumbprint,
            "ca_bundle": str(tls.ca_cert),
            "pid": os.getpid(),
            "seed": {
                "persons": options.persons,
                "dynamics_only": options.dynamics_only,
                "overlap": options.overlap,
                "seed": options.seed,
            },
        }
        target = self.directory / SANDBOX_JSON
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.info, indent=2))
        temporary.chmod(0o600)
        temporary.replace(target)
        logger.info("sandbox serving: marketo %s, dynamics %s", marketo_server.base_url, dynamics_server.base_url)
        return self.info

    def stop(self) -> None:
        """Stop both servers and close their databases; the data stays under DIR."""
        for server in self._servers:
            server.stop()
        self._servers.clear()
        for app in (self.marketo, self.dynamics):
            if app is not None:
                app.close()
        (self.directory / SANDBOX_JSON).unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def read_info(directory: Path) -> dict[str, Any]:
    """Read DIR/sandbox.json written by a running sandbox."""
    info: dict[str, Any] = json.loads((directory / SANDBOX_JSON).read_text())
    return info
