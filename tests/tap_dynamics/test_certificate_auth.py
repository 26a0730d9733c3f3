"""Entra client-certificate credentials (the form most tenants require for application users).

The sandbox registers a certificate on its app (its PEM and thumbprint are in sandbox.json) and verifies the
client assertion msal signs with it: RS256 with the ``x5t`` thumbprint header, addressed to the token endpoint,
issued by the client, not expired. A key that does not belong to a registered certificate is refused with
Entra's AADSTS700027, and the tap says which settings to check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from mktdyn_common.errors import AuthenticationError, ConfigurationError
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection

from tests.tap_dynamics.helpers import run_tap, tap_config
from tests.test_fatal_errors import reason


def certificate_config(info: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The tap's settings with the sandbox's certificate credential instead of the client secret."""
    config = tap_config(info)
    del config["client_secret"]
    config["client_certificate_path"] = info["dynamics_client_certificate_path"]
    config["client_certificate_thumbprint"] = info["dynamics_client_certificate_thumbprint"]
    config.update(overrides)
    return config


def unregistered_pem(path: Path) -> str:
    """A PEM with a fresh RSA key and a self-signed certificate the app does not know."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not registered")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    return str(path)


def test_the_tap_runs_with_a_certificate_credential(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    run = run_tap(tmp_path, certificate_config(sandbox_info))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.records["dynamics_leads"]
    assert run.records["dynamics_contacts"]


def test_the_thumbprint_is_computed_from_the_pem_when_left_empty(sandbox_info: dict[str, Any]) -> None:
    config = {f"dynamics_{k}": v for k, v in certificate_config(sandbox_info, client_certificate_thumbprint="").items()}
    client = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
    try:
        assert client.entity_definition("lead").logical_name == "lead"
        assert client.calls["auth"] == 1
    finally:
        client.close()


@pytest.mark.parametrize("thumbprint", ["registered", "computed"])
def test_a_key_the_app_does_not_know_is_refused_naming_the_certificate_settings(
    sandbox_info: dict[str, Any], tmp_path: Path, thumbprint: str
) -> None:
    config = certificate_config(
        sandbox_info,
        client_certificate_path=unregistered_pem(tmp_path / "other.pem"),
        client_certificate_thumbprint=sandbox_info["dynamics_client_certificate_thumbprint"]
        if thumbprint == "registered"
        else None,
    )
    run = run_tap(tmp_path, config, discover=True)
    assert run.returncode == 1
    line = reason(run)  # type: ignore[arg-type]  # TapRun has the stderr reason() reads
    assert "AADSTS700027" in line
    assert "settings 'client_certificate_path' and 'client_certificate_thumbprint'" in line
    assert "PRIVATE KEY" not in run.stderr


def test_the_target_names_its_prefixed_certificate_settings(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    config = {
        f"dynamics_{k}": v
        for k, v in certificate_config(
            sandbox_info, client_certificate_path=unregistered_pem(tmp_path / "other.pem")
        ).items()
    }
    client = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
    with pytest.raises(AuthenticationError, match="'dynamics_client_certificate_path' and 'dynamics_client_"):
        client.entity_definition("lead")


def test_certificate_settings_are_validated(sandbox_info: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="setting 'client_certificate_thumbprint': must be the"):
        DataverseConnection.from_config(certificate_config(sandbox_info, client_certificate_thumbprint="abc"))
    with pytest.raises(ConfigurationError, match=r"setting .client_certificate_path.: .* is not a readable file"):
        DataverseConnection.from_config(
            certificate_config(sandbox_info, client_certificate_path=str(tmp_path / "missing.pem"))
        )
    key_only = tmp_path / "key-only.pem"
    key_only.write_text("not a pem")
    client = DataverseClient(
        DataverseConnection.from_config(certificate_config(sandbox_info, client_certificate_path=str(key_only)))
    )
    with pytest.raises(ConfigurationError, match=r"setting .client_certificate_path.: .* holds no unencrypted PEM"):
        client.entity_definition("lead")
