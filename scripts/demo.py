"""`make demo`: the sync against the local sandbox, through Meltano, with no credentials.

1. start the sandbox of both APIs (its own CA, seeded data);
2. `meltano run sync` (the initial sync);
3. edits as users of both products would make them: a same-field collision on a lead and on a contact,
   different fields edited on both sides, a person flagged for creation in Dynamics, a value Dynamics would
   reject, a deletion on each side, a lead qualified into a contact;
4. `meltano run sync` again and the report of what the merge decided.

Write-back is not in this release, so the job runs in dry run (`dry_run: true`, the target's default): the
report lists exactly what would be written to each system, and the demo checks that nothing was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.cli import ENV_VARIABLES
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    """A step heading on stdout."""
    print(f"\n=== {text}", flush=True)


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start `mktdyn-sandbox serve` and wait for sandbox.json."""
    process = subprocess.Popen(
        [
            str(BIN / "mktdyn-sandbox"),
            "serve",
            "--dir",
            str(directory),
            "--persons",
            "400",
            "--dynamics-only",
            "60",
            "--export-delay",
            "0.2",
        ],
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (directory / "sandbox.json").exists():
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the sandbox did not start within 120 s")
        time.sleep(0.2)
    return process, json.loads((directory / "sandbox.json").read_text())


def meltano_env(info: dict[str, Any], project_dir: Path) -> dict[str, str]:
    """The variables meltano.yml's sandbox environment reads (as `mktdyn-sandbox env` prints them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env.update({variable: str(info[key]) for key, variable in ENV_VARIABLES.items()})
    env.update(
        {
            "MKTDYN_MARKETO_CA_BUNDLE": info["ca_bundle"],
            "MKTDYN_DYNAMICS_CA_BUNDLE": info["ca_bundle"],
            "MKTDYN_START_DATE": (datetime.now(UTC) - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "MKTDYN_STORE_URL": f"sqlite:///{project_dir / 'store.db'}",
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_SYS_DIR_ROOT": str(project_dir / ".meltano"),
            "MELTANO_DATABASE_URI": f"sqlite:///{project_dir / 'meltano.db'}",
        }
    )
    return env


def meltano(env: dict[str, str], *args: str) -> str:
    """Run meltano in the repository's project; fail the demo if it fails."""
    result = subprocess.run(
        [str(BIN / "meltano"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-6000:])
        raise SystemExit(f"meltano {' '.join(args)} failed with exit code {result.returncode}")
    return result.stdout + result.stderr


def linked_pairs(store_url: str) -> list[dict[str, Any]]:
    """Pairs in the store with a full baseline (fields that agreed after the first sync)."""
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.text("SELECT * FROM pairs ORDER BY pair_id"))]
    engine.dispose()
    return [r for r in rows if {"title", "firstName", "phone", "city"} <= set(json.loads(r["baseline"]))]


def user_edits(info: dict[str, Any], store_url: str) -> list[str]:
    """Edit both systems as their users would; return what was done, in words."""
    admin = SandboxAdmin(info)
    config = {
        "marketo_base_url": info["marketo_url"],
        "marketo_client_id": info["marketo_client_id"],
        "marketo_client_secret": info["marketo_client_secret"],
        "marketo_ca_bundle": info["ca_bundle"],
        "dynamics_base_url": info["dynamics_url"],
        "dynamics_authority_host": info["dynamics_authority"],
        "dynamics_tenant_id": info["dynamics_tenant_id"],
        "dynamics_client_id": info["dynamics_client_id"],
        "dynamics_client_secret": info["dynamics_client_secret"],
        "dynamics_ca_bundle": info["ca_bundle"],
    }
    done: list[str] = []
    pairs = linked_pairs(store_url)
    leads = [p for p in pairs if p["entity"] == "lead"]
    contacts = [p for p in pairs if p["entity"] == "contact"]
    lead, other_lead, qualified, deleted_lead = leads[0], leads[1], leads[2], leads[3]
    contact, deleted_contact = contacts[0], contacts[1]
    with MarketoClient(MarketoConnection.from_config(config, "marketo_")) as marketo:
        dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
        try:
            for pair, what in ((lead, "lead"), (contact, "contact")):
                admin.marketo.edit("person", pair["marketo_id"], {"title": f"Head of Demand Gen ({what})"})
                admin.dynamics.edit(pair["entity"], pair["dynamics_id"], {"jobtitle": f"VP Marketing ({what})"})
                done.append(f"same-field collision on {what} {pair['dynamics_id']}: title edited in both systems")
            admin.marketo.edit("person", other_lead["marketo_id"], {"firstName": "Renée"})
            admin.dynamics.edit("lead", other_lead["dynamics_id"], {"telephone1": "+1 206 555 0199"})
            done.append(
                f"different fields on person {other_lead['marketo_id']}: firstName in Marketo, phone in Dynamics"
            )
            created = marketo.sync_leads(
                "createOnly",
                [
                    {
                        "email": "grace.demo@example.com",
                        "firstName": "Grace",
                        "lastName": "Hopper",
                        "syncToDynamics": True,
                        "title": "Rear Admiral",
                    },
                    {
                        "email": "too.long@example.com",
                        "firstName": "Wolfeschlegelsteinhausenbergerdorff" * 2,
                        "lastName": "Long",
                        "syncToDynamics": True,
                    },
                ],
                "email",
            )
            done.append(f"person {created[0].id} flagged 'Sync to Dynamics' (a lead should be created)")
            done.append(f"person {created[1].id} flagged with a first name longer than Dynamics' 50 characters")
            admin.marketo.delete("person", deleted_lead["marketo_id"])
            done.append(f"person {deleted_lead['marketo_id']} deleted in Marketo")
            admin.dynamics.delete("contact", deleted_contact["dynamics_id"])
            done.append(f"contact {deleted_contact['dynamics_id']} deleted in Dynamics")
            dynamics.qualify_lead(qualified["dynamics_id"])
            done.append(f"lead {qualified['dynamics_id']} qualified into a contact")
        finally:
            dynamics.close()
    admin.close()
    return done


def main() -> int:
    """Run the demo; exit non-zero if any step fails."""
    with tempfile.TemporaryDirectory(prefix="mktdyn-demo-") as tmp:
        work = Path(tmp)
        say("Starting the sandbox of Marketo's REST API and Dataverse's Web API")
        process, info = start_sandbox(work / "sandbox")
        try:
            print(f"Marketo:  {info['marketo_url']}\nDynamics: {info['dynamics_url']}")
            env = meltano_env(info, work)
            admin = SandboxAdmin(info)
            say("meltano run sync (initial sync)")
            meltano(env, "run", "sync")
            print(meltano(env, "invoke", "mktdyn", "status").strip().splitlines()[0])
            say("Users edit both systems")
            for line in user_edits(info, env["MKTDYN_STORE_URL"]):
                print(f"- {line}")
            time.sleep(1.1)  # export windows end on whole seconds; step past the last edit's second
            admin.marketo.reset_stats()
            admin.dynamics.reset_stats()
            say("meltano run sync (incremental)")
            meltano(env, "run", "sync")
            say("Report")
            report = subprocess.run(
                [str(BIN / "mktdyn"), "report"], env=env, capture_output=True, text=True, check=True
            )
            print(report.stdout)
            written = admin.marketo.stats()["records_written_total"] + admin.dynamics.stats()["records_written_total"]
            if written:
                raise SystemExit(f"a dry run wrote {written} record(s): that is a bug")
            print("Checked: the dry run wrote nothing to either system.")
            admin.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    say("Demo finished; the sandbox is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
