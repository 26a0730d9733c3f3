"""How the plugins' settings map onto a sandbox.json: one place for the demo, the tests and the benchmarks.

The taps take their connection settings unprefixed; the target takes the same ones prefixed ``marketo_`` /
``dynamics_`` (docs/architecture.md §9.4). ``start_date`` reaches back past the seed (which spans the 62 days before it
was made), so a first extraction sees every seeded record.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: The environment variable meltano.yml reads -> its sandbox.json key (what `mktdyn-sandbox env` prints).
#: The sandbox's one CA is exported under both connections' names, the ones meltano.yml maps onto ``ca_bundle``.
ENV_VARIABLES = {
    "MKTDYN_MARKETO_BASE_URL": "marketo_url",
    "MKTDYN_MARKETO_CLIENT_ID": "marketo_client_id",
    "MKTDYN_MARKETO_CLIENT_SECRET": "marketo_client_secret",
    "MKTDYN_MARKETO_CA_BUNDLE": "ca_bundle",
    "MKTDYN_DYNAMICS_BASE_URL": "dynamics_url",
    "MKTDYN_DYNAMICS_AUTHORITY_HOST": "dynamics_authority",
    "MKTDYN_DYNAMICS_TENANT_ID": "dynamics_tenant_id",
    "MKTDYN_DYNAMICS_CLIENT_ID": "dynamics_client_id",
    "MKTDYN_DYNAMICS_CLIENT_SECRET": "dynamics_client_secret",
    "MKTDYN_DYNAMICS_USERNAME": "dynamics_username",
    "MKTDYN_DYNAMICS_PASSWORD": "dynamics_password",
    "MKTDYN_DYNAMICS_CA_BUNDLE": "ca_bundle",
}


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


def meltano_env(info: dict[str, Any], project_dir: Path) -> dict[str, str]:
    """The environment for `meltano run sync` against this sandbox, with Meltano's own files in ``project_dir``.

    The machine-wide CA variables are dropped: the plugins trust exactly the sandbox's CA through their
    ``ca_bundle`` settings.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env.update({variable: str(info[key]) for variable, key in ENV_VARIABLES.items()})
    env.update(
        {
            "MKTDYN_START_DATE": start_date(),
            "MKTDYN_STORE_URL": f"sqlite:///{project_dir / 'store.db'}",
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(project_dir / ".meltano"),
            "MELTANO_DATABASE_URI": f"sqlite:///{project_dir / 'meltano.db'}",
        }
    )
    return env
