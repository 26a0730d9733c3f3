"""The sandbox frame shared by both halves: CLI, TLS, sandbox.json, admin endpoints, faults, seeding."""

from __future__ import annotations

import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.faults import FaultInjector, FaultSpecError, parse_spec
from mktdyn_sandbox.seed import SeedPlan
from mktdyn_sandbox.tls import ensure_tls

SANDBOX_KEYS = {
    "marketo_url",
    "marketo_client_id",
    "marketo_client_secret",
    "dynamics_url",
    "dynamics_authority",
    "dynamics_tenant_id",
    "dynamics_client_id",
    "dynamics_client_secret",
    "dynamics_username",
    "dynamics_password",
    "ca_bundle",
}


def test_fault_spec_parses_every_documented_kind() -> None:
    spec = (
        "marketo.601=0.1,marketo.602=0.1,marketo.606=0.2,marketo.607=0.01,marketo.611=0.1,marketo.615=0.1,"
        "marketo.1029=0.1,dynamics.401=0.1,dynamics.412=0.1,dynamics.429=0.3,dynamics.500=0.1,"
        "dynamics.503=0.1,reset=0.05,latency_ms=20,spike_ms=500@0.01"
    )
    parsed = parse_spec(spec)
    assert parsed["marketo"].codes == {
        "601": 0.1,
        "602": 0.1,
        "606": 0.2,
        "607": 0.01,
        "611": 0.1,
        "615": 0.1,
        "1029": 0.1,
    }
    assert parsed["dynamics"].codes == {"401": 0.1, "412": 0.1, "429": 0.3, "500": 0.1, "503": 0.1}
    for system in ("marketo", "dynamics"):
        assert parsed[system].reset == 0.05
        assert parsed[system].latency_ms == 20
        assert (parsed[system].spike_ms, parsed[system].spike_probability) == (500, 0.01)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("marketo.429=0.1", "unknown fault kind '429'"),
        ("dynamics.606=0.1", "unknown fault kind '606'"),
        ("salesforce.500=0.1", "unknown system 'salesforce'"),
        ("marketo.606=2", "between 0 and 1"),
        ("marketo.606", "expected key=value"),
        ("spike_ms=500", "N@probability"),
        ("latency_ms=-3", "cannot be negative"),
    ],
)
def test_fault_spec_errors_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_spec(spec)


def test_fault_draws_are_deterministic_for_a_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        injector = FaultInjector("marketo.606=0.3,marketo.611=0.2,reset=0.1", seed=seed)
        return [("reset" if d.reset else d.code) for d in (injector.draw("marketo") for _ in range(200))]

    first, again, other = draws(3), draws(3), draws(4)
    assert first == again
    assert first != other
    assert 40 < sum(1 for d in first if d == "606") < 90  # about 0.9 * 0.3 * 200 = 54
    assert all(d is None for d in (FaultInjector("", 1).draw("dynamics").code for _ in range(50)))


def test_seed_plan_is_deterministic_and_realistic() -> None:
    plan = SeedPlan(persons=400, dynamics_only=50, overlap=0.6, seed=11)
    persons = list(plan.marketo_persons())
    assert persons == list(SeedPlan(persons=400, dynamics_only=50, overlap=0.6, seed=11).marketo_persons())
    assert all(p["email"].isascii() for p in persons)
    assert any("'" in p["lastName"] for p in persons)
    assert any(not p["firstName"].isascii() or not p["lastName"].isascii() for p in persons)
    assert any("+" in p["email"] for p in persons)
    rows = list(plan.dynamics_rows())
    overlapping = [r for r in rows if r.person_index is not None]
    assert 0.5 * 400 < len({r.person_index for r in overlapping}) < 0.7 * 400
    assert len([r for r in rows if r.person_index is None]) == 50
    assert {r.entity for r in rows} == {"lead", "contact"}
    assert all(len(r.fields["firstname"]) <= 50 and len(r.fields["lastname"]) <= 50 for r in rows)
    assert any(r.fields["emailaddress1"] != r.fields["emailaddress1"].strip() for r in rows)
    assert any(r.fields["new_synctomkto"] is False for r in rows)


def test_tls_material_is_reused_and_verifies(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca = first.ca_cert.read_bytes()
    assert ensure_tls(tmp_path).ca_cert.read_bytes() == ca
    context = ssl.create_default_context(cafile=str(first.ca_cert))
    assert context.cert_store_stats()["x509_ca"] == 1
    assert oct(first.server_key.stat().st_mode & 0o777) == "0o600"


def test_in_process_sandbox_serves_tls_and_admin(make_sandbox) -> None:
    sandbox = make_sandbox(persons=20, dynamics_only=5)
    info = sandbox.info
    assert SANDBOX_KEYS <= set(info)
    assert info["marketo_url"].startswith("https://127.0.0.1:")
    assert info["dynamics_url"].startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        session = requests.Session()
        session.trust_env = False
        session.get(f"{info['marketo_url']}/_sandbox/health", verify=True, timeout=10)
    admin = SandboxAdmin(info)
    try:
        for system in (admin.marketo, admin.dynamics):
            system.reset_stats()
            assert system.stats()["requests_total"] == 0
            system.faults("marketo.606=0.5")
            system.faults("")
            with pytest.raises(RuntimeError, match="unknown fault kind"):
                system.faults("dynamics.999=1")
            before = system.config()
            with pytest.raises(RuntimeError, match="unknown"):
                system.config(no_such_setting=1)
            assert system.config() == before
        admin.marketo.advance_clock(60)
        health = admin.dynamics._call("GET", "health")
        assert health["time"] > time.time() + 55  # one clock for both servers
    finally:
        admin.close()


def test_cli_serve_writes_sandbox_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "sbx"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mktdyn_sandbox.cli",
            "serve",
            "--dir",
            str(directory),
            "--persons",
            "30",
            "--dynamics-only",
            "5",
            "--no-limits",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (directory / "sandbox.json").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "sandbox.json did not appear"
            time.sleep(0.1)
        info = json.loads((directory / "sandbox.json").read_text())
        assert SANDBOX_KEYS <= set(info)
        session = requests.Session()
        session.trust_env = False
        health = session.get(f"{info['dynamics_url']}/_sandbox/health", verify=info["ca_bundle"], timeout=10)
        assert health.json()["system"] == "dynamics"
        env = subprocess.run(
            [sys.executable, "-m", "mktdyn_sandbox.cli", "env", str(directory)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"export MKTDYN_MARKETO_BASE_URL={info['marketo_url']}" in env.stdout
        ca_bundle = shlex.quote(info["ca_bundle"])
        assert f"export MKTDYN_MARKETO_CA_BUNDLE={ca_bundle}" in env.stdout
        assert f"export MKTDYN_DYNAMICS_CA_BUNDLE={ca_bundle}" in env.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not (directory / "sandbox.json").exists()
    assert (directory / "ca.pem").exists()
    assert os.listdir(directory)


def test_cli_rejects_a_bad_fault_spec(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mktdyn_sandbox.cli",
            "serve",
            "--dir",
            str(tmp_path),
            "--faults",
            "marketo.999=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown fault kind '999'" in result.stderr
