"""The Entra authority with real msal, and bearer checks on the Web API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox

from tests.sandbox.test_dataverse_helpers import (
    PortRestoringSession,
    SandboxSession,
    confidential_app,
    fetch_token,
)


@pytest.fixture
def dynamics(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(persons=20, dynamics_only=5)


def test_msal_client_credentials_token_opens_the_web_api(dynamics: Sandbox) -> None:
    info = dynamics.info
    app = confidential_app(info)
    result = app.acquire_token_for_client(scopes=[f"{info['dynamics_url']}/.default"])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["token_source"] == "identity_provider"
    assert 3000 < result["expires_in"] <= 3599
    session = SandboxSession(info["ca_bundle"])
    ok = session.get(
        f"{info['dynamics_url']}/api/data/v9.2/", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert ok.status_code == 200
    assert {"name": "leads", "kind": "EntitySet", "url": "leads"} in ok.json()["value"]
    assert app.acquire_token_for_client(scopes=[f"{info['dynamics_url']}/.default"])["token_source"] == "cache"


def test_msal_password_grant_after_user_realm_discovery(dynamics: Sandbox) -> None:
    info = dynamics.info
    http_client = PortRestoringSession(info["ca_bundle"], info["dynamics_authority"])
    app = confidential_app(info, http_client=http_client)
    result = app.acquire_token_by_username_password(
        info["dynamics_username"], info["dynamics_password"], scopes=[f"{info['dynamics_url']}/.default"]
    )
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == info["dynamics_username"]
    assert "refresh_token" in result
    assert any("/common/userrealm/" in call for call in http_client.realm_calls)
    assert [a["username"] for a in app.get_accounts()] == [info["dynamics_username"]]
    session = SandboxSession(info["ca_bundle"])
    ok = session.get(
        f"{info['dynamics_url']}/api/data/v9.2/leads?$top=1",
        headers={"Authorization": f"Bearer {result['access_token']}"},
    )
    assert ok.status_code == 200


def test_public_client_password_grant_and_wrong_password(dynamics: Sandbox) -> None:
    info = dynamics.info
    authority = f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}"
    app = msal.PublicClientApplication(
        info["dynamics_client_id"],
        authority=authority,
        instance_discovery=False,
        http_client=PortRestoringSession(info["ca_bundle"], info["dynamics_authority"]),
    )
    good = app.acquire_token_by_username_password(
        info["dynamics_username"], info["dynamics_password"], scopes=[f"{info['dynamics_url']}/.default"]
    )
    assert "access_token" in good, good
    bad = app.acquire_token_by_username_password(
        info["dynamics_username"], "not-the-password", scopes=[f"{info['dynamics_url']}/.default"]
    )
    assert bad["error"] == "invalid_grant"
    assert bad["error_codes"] == [50126]
    assert bad["error_description"].startswith("AADSTS50126")


def test_wrong_secret_is_invalid_client(dynamics: Sandbox) -> None:
    info = dynamics.info
    result = confidential_app(info, secret="wrong").acquire_token_for_client(
        scopes=[f"{info['dynamics_url']}/.default"]
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "AADSTS7000215" in result["error_description"]
    raw = fetch_token(info, client_secret="wrong")
    assert raw.status_code == 401
    assert {"trace_id", "correlation_id", "timestamp"} <= set(raw.json())


def test_unknown_tenant_and_unknown_client(dynamics: Sandbox) -> None:
    info = dynamics.info
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        confidential_app(info, tenant="00000000-0000-0000-0000-000000000000")
    session = SandboxSession(info["ca_bundle"])
    unknown = session.post(
        f"{info['dynamics_authority']}/nope.example/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["dynamics_client_id"],
            "client_secret": info["dynamics_client_secret"],
            "scope": "x/.default",
        },
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_request"
    assert unknown.json()["error_codes"] == [90002]
    stranger = fetch_token(info, client_id="11111111-2222-3333-4444-555555555555")
    assert stranger.status_code == 400
    assert stranger.json()["error_codes"] == [700016]


def test_missing_unknown_and_expired_tokens_get_401(dynamics: Sandbox) -> None:
    info = dynamics.info
    session = SandboxSession(info["ca_bundle"])
    url = f"{info['dynamics_url']}/api/data/v9.2/leads?$top=1"
    missing = session.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith(
        f"Bearer authorization_uri={info['dynamics_authority']}/{info['dynamics_tenant_id']}/oauth2/authorize"
    )
    assert "error" in missing.json()
    forged = session.get(url, headers={"Authorization": "Bearer eyJ0eXAiOiJKV1QifQ.e30.c2lnbmF0dXJl"})
    assert forged.status_code == 401
    token = fetch_token(info).json()["access_token"]
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    admin = SandboxAdmin(info)
    admin.dynamics.advance_clock(3600)
    expired = session.get(url, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    admin.close()


def test_token_ttl_setting_and_audience(dynamics: Sandbox) -> None:
    info = dynamics.info
    admin = SandboxAdmin(info)
    admin.dynamics.config(token_ttl=60)
    body = fetch_token(info).json()
    assert body["expires_in"] == 60
    assert body["ext_expires_in"] == 60
    other = fetch_token(info, scope="https://other.crm.dynamics.com/.default").json()["access_token"]
    session = SandboxSession(info["ca_bundle"])
    refused = session.get(f"{info['dynamics_url']}/api/data/v9.2/leads", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 401
    admin.close()


def test_instance_discovery_and_user_realm(dynamics: Sandbox) -> None:
    info = dynamics.info
    authority = f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}"
    session = SandboxSession(info["ca_bundle"])
    realm = session.get(
        f"{info['dynamics_authority']}/common/userrealm/{info['dynamics_username']}", params={"api-version": "1.0"}
    ).json()
    assert realm["account_type"] == "Managed"
    discovery = session.get(
        f"{info['dynamics_authority']}/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        },
    )
    assert discovery.json()["tenant_discovery_endpoint"].endswith("/v2.0/.well-known/openid-configuration")
    # msal with instance discovery on, pointed at our own discovery endpoint
    app = msal.ConfidentialClientApplication(
        info["dynamics_client_id"],
        client_credential=info["dynamics_client_secret"],
        authority=f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}",
        instance_discovery=f"{info['dynamics_authority']}/common/discovery/instance",
        http_client=SandboxSession(info["ca_bundle"]),
    )
    assert "access_token" in app.acquire_token_for_client(scopes=[f"{info['dynamics_url']}/.default"])


def test_requests_ca_bundle_would_be_ignored_without_trust_env(
    dynamics: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the helpers set trust_env=False: an unrelated REQUESTS_CA_BUNDLE overrides a session's verify."""
    info = dynamics.info
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    plain = requests.Session()
    plain.verify = info["ca_bundle"]
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{info['dynamics_url']}/_sandbox/health")
    assert SandboxSession(info["ca_bundle"]).get(f"{info['dynamics_url']}/_sandbox/health").status_code == 200


def signed_assertion(info: dict[str, Any], **claims: Any) -> str:
    """A client assertion signed RS256 with the sandbox's registered key (``x5t`` header), claims overridable."""
    data = Path(info["dynamics_client_certificate_path"]).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    certificate = x509.load_pem_x509_certificate(data)
    now = int(time.time())
    token_endpoint = f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}/oauth2/v2.0/token"
    payload = {
        "aud": token_endpoint,
        "iss": info["dynamics_client_id"],
        "sub": info["dynamics_client_id"],
        "exp": now + 600,
        "nbf": now,
        "jti": "one",
        **claims,
    }

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    x5t = b64(certificate.fingerprint(hashes.SHA1()))  # Entra's x5t is SHA-1
    signed = (
        b64(json.dumps({"alg": "RS256", "typ": "JWT", "x5t": x5t}).encode()) + "." + b64(json.dumps(payload).encode())
    )
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{b64(signature)}"


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({}, None),
        ({"aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token"}, 700212),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
        ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}, 700024),
    ],
)
def test_a_client_assertion_is_checked_as_entra_does(
    sandbox_info: dict[str, Any], claims: dict[str, Any], code: int | None
) -> None:
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed_assertion(sandbox_info, **claims),
    }
    response = _assertion_token(sandbox_info, form)
    if code is None:
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
    else:
        assert response.status_code == 401, response.text
        assert response.json()["error_codes"] == [code]


def test_a_tampered_client_assertion_is_refused_with_aadsts700027(sandbox_info: dict[str, Any]) -> None:
    header, payload, signature = signed_assertion(sandbox_info).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["jti"] = "two"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": f"{header}.{forged}.{signature}",
    }
    response = _assertion_token(sandbox_info, form)
    assert response.status_code == 401
    assert response.json()["error_codes"] == [700027]
    assert "did not match the expected signature" in response.json()["error_description"]


def _assertion_token(info: dict[str, Any], form: dict[str, str]) -> requests.Response:
    body = {
        "grant_type": "client_credentials",
        "client_id": info["dynamics_client_id"],
        "scope": f"{info['dynamics_url']}/.default",
        **form,
    }
    return SandboxSession(info["ca_bundle"]).post(
        f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}/oauth2/v2.0/token", data=body, timeout=30
    )
