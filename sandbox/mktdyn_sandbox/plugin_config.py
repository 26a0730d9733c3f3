"""How the plugins' settings map onto a sandbox.json: one place for the demo, the tests and the benchmarks.

The taps take their connection settings unprefixed; the target takes the same ones prefixed ``marketo_`` /
``dynamics_`` (DESIGN §9.4). ``start_date`` reaches back past the seed (which spans the 62 days before it was
made), so a first extraction sees every seeded record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def start_date(days: int = 90) -> str:
    """An ISO start date ``days`` before now (the seed spans the 62 days before the sandbox first started)."""
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def marketo_connection(info: dict[str, Any]) -> dict[str, Any]:
    """tap-marketo-leads' connection settings for this sandbox."""
    return {
        "base_url": info["marketo_url"],
        "client_id": info["marketo_client_id"],
        "client_secret": info["marketo_client_secret"],
        "ca_bundle": info["ca_bundle"],
    }


def dynamics_connection(info: dict[str, Any]) -> dict[str, Any]:
    """tap-dynamics-leads' connection settings for this sandbox."""
    return {
        "base_url": info["dynamics_url"],
        "authority_host": info["dynamics_authority"],
        "tenant_id": info["dynamics_tenant_id"],
        "client_id": info["dynamics_client_id"],
        "client_secret": info["dynamics_client_secret"],
        "ca_bundle": info["ca_bundle"],
    }


def target_connections(info: dict[str, Any]) -> dict[str, Any]:
    """target-mktdyn-merge's two connections for this sandbox (the taps' settings, prefixed)."""
    return {
        **{f"marketo_{key}": value for key, value in marketo_connection(info).items()},
        **{f"dynamics_{key}": value for key, value in dynamics_connection(info).items()},
    }
