"""A small client of the ``/_sandbox/`` admin endpoints, for tests, the demo and benchmarks."""

from __future__ import annotations

from typing import Any

import requests


class SystemAdmin:
    """Admin endpoints of one server (``marketo`` or ``dynamics``)."""

    def __init__(self, base_url: str, ca_bundle: str, session: requests.Session) -> None:
        self.base_url = base_url.rstrip("/")
        self._ca_bundle = ca_bundle
        self._session = session

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_sandbox/{path}", verify=self._ca_bundle, timeout=60, **kwargs
        )
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call("POST", "stats/reset")

    def faults(self, spec: str) -> None:
        """Replace the fault SPEC (shared by both servers of the sandbox)."""
        self._call("POST", "faults", json={"spec": spec})

    def edit(self, entity: str, record_id: str | int, fields: dict[str, Any]) -> dict[str, Any]:
        """Edit a record as a user of the product would."""
        result: dict[str, Any] = self._call("POST", "edit", json={"entity": entity, "id": record_id, "fields": fields})
        return result

    def delete(self, entity: str, record_id: str | int) -> dict[str, Any]:
        """Delete a record as a user of the product would."""
        result: dict[str, Any] = self._call("POST", "delete", json={"entity": entity, "id": record_id})
        return result

    def record(self, entity: str, record_id: str | int) -> dict[str, Any] | None:
        """The stored record, or None."""
        response = self._session.get(
            f"{self.base_url}/_sandbox/record",
            params={"entity": entity, "id": record_id},
            verify=self._ca_bundle,
            timeout=60,
        )
        if response.status_code == 400 and "no " in response.text:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def config(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings (limits, switches); with no arguments, read them."""
        if not settings:
            current: dict[str, Any] = self._call("GET", "config")
            return current
        updated: dict[str, Any] = self._call("POST", "config", json=settings)
        return updated

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock (shared by both servers) forward."""
        self._call("POST", "clock", json={"advance_seconds": seconds})


class SandboxAdmin:
    """Admin access to both servers described by a ``sandbox.json``."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self._session = requests.Session()
        self._session.trust_env = False  # never let REQUESTS_CA_BUNDLE replace the sandbox CA
        self.marketo = SystemAdmin(info["marketo_url"], info["ca_bundle"], self._session)
        self.dynamics = SystemAdmin(info["dynamics_url"], info["ca_bundle"], self._session)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()
