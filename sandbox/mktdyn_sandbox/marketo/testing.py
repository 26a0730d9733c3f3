"""A raw HTTP client of the sandbox's Marketo API, for tests that must see exact status codes and bodies.

Third-party clients (marketorestpython) retry, pace and hide the envelope; assertions about the
envelope, limits and faults need the bare responses. The session ignores ``REQUESTS_CA_BUNDLE`` so the
sandbox CA is always the one trusted.
"""

from __future__ import annotations

from typing import Any

import requests


class MarketoHttp:
    """Token handling plus thin GET/POST helpers over one keep-alive session."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.base_url = str(info["marketo_url"]).rstrip("/")
        self.client_id = str(info["marketo_client_id"])
        self.client_secret = str(info["marketo_client_secret"])
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(info["ca_bundle"])
        self.token = ""

    def identity(self, method: str = "GET", secret: str | None = None, form: bool = False) -> requests.Response:
        """Ask the identity service for a token (query string, or form body with ``form``)."""
        params = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret if secret is None else secret,
        }
        url = f"{self.base_url}/identity/oauth/token"
        if form:
            return self.session.request(method, url, data=params, timeout=30)
        return self.session.request(method, url, params=params, timeout=30)

    def authenticate(self) -> str:
        """Fetch (or re-fetch) the access token."""
        response = self.identity()
        response.raise_for_status()
        self.token = str(response.json()["access_token"])
        return self.token

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Any call with the bearer token (fetched on first use)."""
        if not self.token:
            self.authenticate()
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.session.request(method, f"{self.base_url}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET and decode the JSON envelope."""
        body: dict[str, Any] = self.request("GET", path, params=params).json()
        return body

    def post(self, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        """POST a JSON body and decode the JSON envelope."""
        answer: dict[str, Any] = self.request("POST", path, json=body, params=params).json()
        return answer

    def close(self) -> None:
        """Close the session."""
        self.session.close()


class WebhookAdmin:
    """The sandbox's webhook admin endpoints (``/_sandbox/webhooks``, ``/_sandbox/campaigns/trigger``).

    Answers are returned with their status rather than raised, so tests can assert on a refusal's 400.
    """

    def __init__(self, info: dict[str, Any]) -> None:
        self.base_url = str(info["marketo_url"]).rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(info["ca_bundle"])

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = self.session.request(method, f"{self.base_url}/_sandbox/{path}", json=body, timeout=120)
        return response.status_code, response.json()

    def define(self, definition: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Define or replace a webhook by name."""
        status, body = self._call("POST", "webhooks", definition)
        return status, body

    def listing(self) -> list[dict[str, Any]]:
        """Every defined webhook."""
        _, body = self._call("GET", "webhooks")
        webhooks: list[dict[str, Any]] = body["webhooks"]
        return webhooks

    def trigger(
        self, webhook: str, persons: list[int], campaign: dict[str, Any] | None = None, concurrency: int = 1
    ) -> tuple[int, dict[str, Any]]:
        """Run a trigger campaign's Call Webhook step for ``persons``."""
        payload = {"webhook": webhook, "persons": persons, "campaign": campaign or {}, "concurrency": concurrency}
        status, body = self._call("POST", "campaigns/trigger", payload)
        return status, body

    def close(self) -> None:
        """Close the session."""
        self.session.close()
