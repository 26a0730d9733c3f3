"""Shared helpers of the Dataverse sandbox tests (no tests here): HTTP sessions, tokens, msal wiring."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal
import requests
from mktdyn_sandbox.sandbox import Sandbox


class SandboxSession(requests.Session):
    """A session that trusts the sandbox CA whatever REQUESTS_CA_BUNDLE says."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = ca_bundle


class PortRestoringSession(SandboxSession):
    """msal's user-realm discovery drops the authority's port; put it back for the sandbox host."""

    def __init__(self, ca_bundle: str, authority: str) -> None:
        super().__init__(ca_bundle)
        self._authority = urlsplit(authority)
        self.realm_calls: list[str] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        parts = urlsplit(str(url))
        if parts.hostname == self._authority.hostname and parts.port is None:
            self.realm_calls.append(str(url))
            url = urlunsplit(parts._replace(netloc=self._authority.netloc))
        return super().get(url, **kwargs)


def info_of(sandbox: Sandbox) -> dict[str, Any]:
    return sandbox.info


def fetch_token(info: dict[str, Any], **form: str) -> requests.Response:
    session = SandboxSession(info["ca_bundle"])
    body = {
        "grant_type": "client_credentials",
        "client_id": info["dynamics_client_id"],
        "client_secret": info["dynamics_client_secret"],
        "scope": f"{info['dynamics_url']}/.default",
        **form,
    }
    return session.post(
        f"{info['dynamics_authority']}/{info['dynamics_tenant_id']}/oauth2/v2.0/token", data=body, timeout=30
    )


def confidential_app(
    info: dict[str, Any],
    secret: str | None = None,
    tenant: str | None = None,
    http_client: requests.Session | None = None,
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        info["dynamics_client_id"],
        client_credential=secret or info["dynamics_client_secret"],
        authority=f"{info['dynamics_authority']}/{tenant or info['dynamics_tenant_id']}",
        instance_discovery=False,
        http_client=http_client or SandboxSession(info["ca_bundle"]),
    )


class Api:
    """A bearer-authenticated client of the sandbox's Web API."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.base = f"{info['dynamics_url']}/api/data/v9.2"
        self.session = SandboxSession(info["ca_bundle"])
        self.session.headers["Authorization"] = f"Bearer {fetch_token(info).json()['access_token']}"
        self.session.headers["OData-Version"] = "4.0"

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base}/{path.lstrip('/')}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), timeout=60, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.url(path), timeout=60, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url(path), timeout=60, **kwargs)

    def create(self, entity_set: str, body: dict[str, Any]) -> str:
        response = self.post(entity_set, json=body)
        assert response.status_code == 204, response.text
        return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")

    def first_id(self, entity_set: str) -> str:
        key = "leadid" if entity_set == "leads" else "contactid"
        row = self.get(entity_set, params={"$select": key, "$top": "1"}).json()["value"][0]
        return str(row[key])


def error_code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def batch_body(boundary: str, parts: list[str]) -> str:
    return "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"


def http_part(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    content_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += ["", json.dumps(body) if body is not None else ""]
    return "\r\n".join(lines)


def changeset(parts: list[str]) -> str:
    boundary = f"changeset_{uuid.uuid4()}"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n" + batch_body(boundary, parts)


def response_statuses(text: str) -> list[int]:
    return [int(line.split(" ")[1]) for line in text.replace("\r\n", "\n").split("\n") if line.startswith("HTTP/1.1 ")]
