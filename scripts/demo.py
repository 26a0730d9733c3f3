"""`make demo`: the sync against the local sandbox, through Meltano, with no credentials.

0. `meltano install` (once; scripts/meltano_plugins.py);
1. start the sandbox of both APIs (its own CA, seeded data);
2. `meltano run sync` (the initial sync);
3. edits as users of both products would make them: a same-field collision on a lead and on a contact,
   different fields edited on both sides, a person flagged for creation in Dynamics, a value Dynamics would
   reject, a deletion on each side, a lead qualified into a contact;
4. `meltano run sync` again and the report of what the merge decided;
5. a check that both systems agree on every synced field of every linked pair, except the fields the
   activity log lists as failed (a value Dynamics would reject) or excluded (a field that cannot flow).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.plugin_config import meltano_env, target_connections
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP
from target_mktdyn_merge.core.normalize import canonical
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.sync.engine import read_metadata

from scripts.meltano_plugins import install_plugins, use_installed_plugins

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


def meltano(env: dict[str, str], *args: str) -> str:
    """Run meltano in the repository's project; fail the demo if it fails."""
    result = subprocess.run(
        [str(BIN / "meltano"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-6000:])
        raise SystemExit(f"meltano {' '.join(args)} failed with exit code {result.returncode}")
    return result.stdout + result.stderr


#: Progress lines of the plugins (INFO on stderr) worth showing while a run goes: export windows, staging rate,
#: planning, write-back pages, the run's end.
PROGRESS = re.compile(
    r"(Export plan: .*|Window \d+/\d+ .*|staged \d+ \S+ record\(s\).*|planning: .*|merge planned .*|"
    r"write-back.*|activity retention: .*|Deleted persons since .*)"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PLUGIN = re.compile(r"(tap-marketo-leads|tap-dynamics-leads|target-mktdyn-stage|target-mktdyn-merge)")


def meltano_progress(env: dict[str, str], *args: str) -> str:
    """Run meltano like :func:`meltano`, printing the plugins' progress lines as they come (no silent minutes)."""
    process = subprocess.Popen(
        [str(BIN / "meltano"), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output: list[str] = []
    started = time.monotonic()
    for line in process.stdout:
        output.append(line)
        plain = ANSI.sub("", line)
        found = PROGRESS.search(plain)
        if found:
            plugin = PLUGIN.search(plain)
            where = plugin[1] if plugin else "sync"
            message = found[1].split(" cmd_type=")[0].rstrip()
            print(f"  {time.monotonic() - started:6.1f} s  {where}: {message}", flush=True)
    if process.wait(timeout=900) != 0:
        sys.stderr.write("".join(output)[-10000:])
        raise SystemExit(f"meltano {' '.join(args)} failed with exit code {process.returncode}")
    return "".join(output)


def linked_pairs(store_url: str, full_baseline: bool = True) -> list[dict[str, Any]]:
    """Pairs in the store (with ``full_baseline``: only those whose fields all agreed after the first sync)."""
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.text("SELECT * FROM pairs ORDER BY pair_id"))]
    engine.dispose()
    if not full_baseline:
        return rows
    return [r for r in rows if {"title", "firstName", "phone", "city"} <= set(json.loads(r["baseline"]))]


def user_edits(info: dict[str, Any], store_url: str) -> list[str]:
    """Edit both systems as their users would; return what was done, in words."""
    admin = SandboxAdmin(info)
    config = target_connections(info)
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


def agreement(info: dict[str, Any], store_url: str) -> tuple[int, int, list[str]]:
    """Compare every mapped field of every linked pair in both systems; excuse what the log explains."""
    config = target_connections(info)
    with MarketoClient(MarketoConnection.from_config(config, "marketo_")) as marketo:
        dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
        try:
            metadata = read_metadata(marketo, dynamics)
        finally:
            dynamics.close()
    store = Store(store_url)
    explained: set[tuple[str, str]] = set()
    for item in iter_activities(store, None, ["validation_failed", "write_failed", "skipped", "deferred"]):
        for change in item["fields"] or [{"field": "*"}]:
            explained.add((str(item["person_id"]), str(change["field"])))
    store.close()
    admin = SandboxAdmin(info)
    checked = excused = 0
    mismatches: list[str] = []
    for pair in linked_pairs(store_url, full_baseline=False):
        person = admin.marketo.record("person", pair["marketo_id"])
        row = admin.dynamics.record(pair["entity"], pair["dynamics_id"])
        if person is None or row is None:
            continue
        options = metadata.options(pair["entity"])
        for rule in DEFAULT_FIELD_MAP.rules(pair["entity"]):
            left = canonical(rule.kind, person.get(rule.marketo), options.get(rule.dynamics))
            right = canonical(rule.kind, row.get(rule.dynamics), options.get(rule.dynamics))
            checked += 1
            if left == right:
                continue
            person_id = str(pair["marketo_id"])
            if {(person_id, rule.marketo), (person_id, rule.dynamics), (person_id, "*")} & explained:
                excused += 1
                continue
            mismatches.append(
                f"person {person_id} {rule.marketo}={left!r} vs {pair['entity']} "
                f"{pair['dynamics_id']} {rule.dynamics}={right!r}"
            )
    admin.close()
    return checked, excused, mismatches


def main() -> int:
    """Run the demo; exit non-zero if any step fails."""
    say("meltano install (each plugin from this checkout, by its pip_url; skipped when nothing changed)")
    install_plugins()
    with tempfile.TemporaryDirectory(prefix="mktdyn-demo-") as tmp:
        work = Path(tmp)
        say("Starting the sandbox of Marketo's REST API and Dataverse's Web API")
        process, info = start_sandbox(work / "sandbox")
        try:
            print(f"Marketo:  {info['marketo_url']}\nDynamics: {info['dynamics_url']}")
            env = meltano_env(info, work)
            use_installed_plugins(Path(env["MELTANO_SYS_DIR_ROOT"]))
            admin = SandboxAdmin(info)
            say("meltano run sync (initial sync)")
            meltano_progress(env, "run", "sync")
            print(meltano(env, "invoke", "mktdyn", "status").strip().splitlines()[0])
            say("Users edit both systems")
            for line in user_edits(info, env["MKTDYN_STORE_URL"]):
                print(f"- {line}")
            time.sleep(1.1)  # export windows end on whole seconds; step past the last edit's second
            admin.marketo.reset_stats()
            admin.dynamics.reset_stats()
            say("meltano run sync (incremental)")
            meltano_progress(env, "run", "sync")
            say("Report")
            report = subprocess.run(
                [str(BIN / "mktdyn"), "report"], env=env, capture_output=True, text=True, check=True
            )
            print(report.stdout)
            say("Do both systems agree?")
            checked, excused, mismatches = agreement(info, env["MKTDYN_STORE_URL"])
            print(
                f"{checked} synced field values compared on linked pairs; {excused} differ where the report "
                "lists a failure or an excluded field"
            )
            if mismatches:
                for line in mismatches[:20]:
                    print(f"  MISMATCH {line}")
                raise SystemExit(f"{len(mismatches)} synced field(s) disagree between Marketo and Dynamics")
            print("Checked: Marketo and Dynamics agree on every other synced field.")
            admin.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    say("Demo finished; the sandbox is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
