"""Sandbox worlds for write-back tests, and the end state two worlds are compared on.

Shared by the write-back, crash-recovery and fault-matrix tests: a :class:`World` is a sandbox, clients of both
APIs and the job's pipeline over one store; :func:`snapshot` is what "the same end state" means (both systems'
mapped fields and how many records hold each email); :func:`accounting_problems` says whether the store's own
books (outbox and activity log) account for every write.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.ops.verify import VerifyResult, run_verify
from target_mktdyn_merge.store import schema as tables

from tests.target.pipeline import JobResult, Pipeline, connection_config

ACTIVITY_TYPE = "mktdynSyncResult"
SEED_VARIANTS = {"title", "phone", "city", "firstName", "lastName"}


class World:
    """A sandbox, clients of both APIs, and the job's pipeline over one store."""

    def __init__(self, root: Path, target_config: dict[str, Any], store_url: str = "", **options: Any) -> None:
        settings = {
            "persons": 80,
            "dynamics_only": 12,
            "overlap": 0.7,
            "seed": 21,
            "limits": False,
            "export_delay": 0.05,
            **options,
        }
        self.sandbox = Sandbox(SandboxOptions(directory=root / "sandbox", **settings))
        self.info = self.sandbox.start()
        self.admin = SandboxAdmin(self.info)
        config = connection_config(self.info)
        self.marketo = MarketoClient(MarketoConnection.from_config(config, "marketo_"))
        self.dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
        self.pipeline = Pipeline(
            self.info,
            root / "work",
            {"dry_run": False, "marketo_activity_type": ACTIVITY_TYPE, **target_config},
            store_url=store_url,
        )

    def close(self) -> None:
        self.marketo.close()
        self.dynamics.close()
        self.admin.close()
        self.sandbox.stop()

    def sync(self, before_merge: Callable[[], None] | None = None, **kwargs: Any) -> Any:
        time.sleep(1.1)  # export windows end on whole seconds: step past the last edit's second
        return self.pipeline.sync(before_merge, **kwargs)

    def reset_stats(self) -> None:
        self.admin.marketo.reset_stats()
        self.admin.dynamics.reset_stats()

    def writes(self) -> tuple[int, int]:
        return (
            self.admin.marketo.stats()["requests_by_kind"].get("write", 0),
            self.admin.dynamics.stats()["requests_by_kind"].get("write", 0),
        )

    def pairs(self) -> list[dict[str, Any]]:
        store = self.pipeline.store()
        with store.transaction() as connection:
            rows = [dict(r._mapping) for r in connection.execute(sa.select(tables.pairs)).all()]
        store.close()
        for row in rows:
            row["baseline"] = json.loads(row["baseline"])
        return rows

    def in_sync(self, entity: str) -> list[dict[str, Any]]:
        return [p for p in self.pairs() if p["entity"] == entity and SEED_VARIANTS <= set(p["baseline"])]

    def person(self, person_id: str | int) -> dict[str, Any]:
        record = self.admin.marketo.record("person", person_id)
        assert record is not None
        return record

    def row(self, entity: str, row_id: str) -> dict[str, Any]:
        record = self.admin.dynamics.record(entity, row_id)
        assert record is not None
        return record

    def leads_with_email(self, email: str) -> list[dict[str, Any]]:
        return self.dynamics.find_by_email("leads", email, ["leadid", "firstname", "lastname", "emailaddress1"])

    def marketo_activities(self, person_id: str | int) -> list[dict[str, Any]]:
        types = {t["apiName"]: t["id"] for t in self.marketo.list_custom_activity_types()}
        since = self.sandbox_time_floor()
        return list(self.marketo.get_activities([types[ACTIVITY_TYPE]], since, [int(person_id)]))

    @staticmethod
    def sandbox_time_floor() -> Any:
        return datetime.now(UTC) - timedelta(days=1)

    def run_job(self, before_merge: Callable[[], None] | None = None, **kwargs: Any) -> JobResult:
        """One run of the job where steps may fail (see :meth:`Pipeline.run_job`)."""
        time.sleep(1.1)  # export windows end on whole seconds: step past the last edit's second
        return self.pipeline.run_job(before_merge, **kwargs)

    def faults(self, spec: str) -> None:
        """Replace the sandbox's fault SPEC (both servers share one injector)."""
        self.admin.marketo.faults(spec)

    def rejected(self) -> Counter[str]:
        """Requests the sandbox refused or broke since the last stats reset, by fault code."""
        counts: Counter[str] = Counter()
        for system in (self.admin.marketo, self.admin.dynamics):
            counts.update(system.stats().get("rejected") or {})
        return counts

    def restart_sandbox(self) -> None:
        """Stop both servers and start them again on the same directory and ports (tokens are lost)."""
        ports = {
            "marketo_port": int(self.info["marketo_url"].rsplit(":", 1)[1].rstrip("/")),
            "dynamics_port": int(self.info["dynamics_url"].rsplit(":", 1)[1].rstrip("/")),
        }
        self.sandbox.stop()
        for name, port in ports.items():
            setattr(self.sandbox.options, name, port)
        self.sandbox.start()

    def verify(self) -> VerifyResult:
        """``mktdyn verify --all`` in process (the CLI's own code, without a process start): both systems read."""
        store = self.pipeline.store()
        try:
            return run_verify(self.pipeline.configs["target-merge"], store)
        finally:
            store.close()

    def settle(self, max_runs: int = 4) -> int:
        """Fault-free runs until one makes no write call (what the last ones wrote has come back); how many."""
        for runs in range(1, max_runs + 1):
            self.reset_stats()
            self.sync()
            if self.writes() == (0, 0):
                return runs
        raise AssertionError(f"still writing after {max_runs} fault-free runs: {self.pipeline.activities()[-5:]}")


MARKETO_FIELDS = (
    "email",
    "firstName",
    "lastName",
    "title",
    "phone",
    "mobilePhone",
    "city",
    "leadSource",
    "unsubscribed",
    "company",
)
DYNAMICS_FIELDS = (
    "emailaddress1",
    "firstname",
    "lastname",
    "jobtitle",
    "telephone1",
    "mobilephone",
    "address1_city",
    "leadsourcecode",
    "donotbulkemail",
)


def snapshot(world: World) -> dict[str, Any]:
    """Both systems' people by email (ids differ between sandboxes for created records)."""
    persons: Counter[str] = Counter()
    person_values: dict[str, tuple[Any, ...]] = {}
    for person_id in range(1, 200):
        record = world.admin.marketo.record("person", person_id)
        if record is None:
            continue
        email = str(record["email"]).strip().lower()
        persons[email] += 1
        person_values[f"{email}#{persons[email]}"] = tuple(record.get(f) for f in MARKETO_FIELDS)
    rows: Counter[str] = Counter()
    row_values: dict[str, tuple[Any, ...]] = {}
    for entity_set in ("leads", "contacts"):
        for row in world.dynamics.query(entity_set, list(DYNAMICS_FIELDS)):
            key = f"{entity_set}:{str(row.get('emailaddress1') or '').strip().lower()}"
            rows[key] += 1
            row_values[f"{key}#{rows[key]}"] = tuple(row.get(f) for f in DYNAMICS_FIELDS)
    return {"persons": persons, "person_values": person_values, "rows": rows, "row_values": row_values}


def activity_keys(world: World) -> Counter[str]:
    """How many times each activity-log entry was posted to Marketo (must be at most once)."""
    types = {t["apiName"]: t["id"] for t in world.marketo.list_custom_activity_types()}
    keys: Counter[str] = Counter()
    ids = list(range(1, 200))
    for start in range(0, len(ids), 30):
        for item in world.marketo.get_activities(
            [types[ACTIVITY_TYPE]], World.sandbox_time_floor(), ids[start : start + 30]
        ):
            for attribute in item.get("attributes") or []:
                if attribute.get("apiName", attribute.get("name")) in ("activityKey", "Activity Key"):
                    keys[str(attribute["value"])] += 1
    return keys


#: Where an outbox entry may end once the systems have settled: sent and confirmed, given up on purpose
#: (its target is gone), replaced by a newer plan, or kept for a retry because its values are invalid.
SETTLED = ("confirmed", "cancelled", "superseded", "invalid")


def accounting_problems(world: World) -> list[str]:
    """Whatever the store's books fail to account for, in words (empty when every write is accounted for).

    Every outbox entry has settled (none planned or left in doubt); every confirmed write to either system
    has exactly one activity naming it; every confirmed custom-activity post is marked posted in the log,
    and what Marketo holds is exactly the set of posted activities, each once.
    """
    store = world.pipeline.store()
    try:
        with store.transaction() as connection:
            outbox = connection.execute(
                sa.select(tables.outbox.c.op_id, tables.outbox.c.action, tables.outbox.c.status)
            ).all()
            log = connection.execute(
                sa.select(
                    tables.activity_log.c.activity_id,
                    tables.activity_log.c.action,
                    tables.activity_log.c.details,
                    tables.activity_log.c.posted_to_marketo,
                )
            ).all()
    finally:
        store.close()
    problems = [f"outbox entry {r.op_id} ({r.action}) ended {r.status}" for r in outbox if r.status not in SETTLED]
    naming: Counter[int] = Counter()
    for row in log:
        op_id = json.loads(row.details or "{}").get("op_id")
        if op_id is not None and row.action not in ("validation_failed", "write_failed", "deferred"):
            naming[int(op_id)] += 1
    for row in outbox:
        if row.status == "confirmed" and row.action != "activity" and naming[row.op_id] != 1:
            problems.append(f"confirmed write {row.op_id} ({row.action}) has {naming[row.op_id]} activities")
    posted = {str(r.activity_id) for r in log if r.posted_to_marketo}
    in_marketo = activity_keys(world)
    twice = sorted(key for key, count in in_marketo.items() if count > 1)
    if twice:
        problems.append(f"custom activities posted more than once: {twice}")
    if set(in_marketo) != posted:
        problems.append(
            f"Marketo holds {len(in_marketo)} custom activities, the log says {len(posted)} were posted "
            f"(missing {sorted(posted - set(in_marketo))[:5]}, unexpected {sorted(set(in_marketo) - posted)[:5]})"
        )
    return problems


def drift_problems(world: World) -> list[str]:
    """What ``mktdyn verify`` finds that nothing in the store explains (empty: the systems agree, or say why)."""
    result = world.verify()
    return [
        f"drift: person {d.person_id} / {d.entity} {d.dynamics_id} {d.field}: Marketo {d.marketo_value!r}, "
        f"Dynamics {d.dynamics_value!r}, baseline {d.baseline}, last activity {d.last_activity}"
        for d in result.drift
    ]


def confirmed_creates(world: World) -> Counter[str]:
    """Records created (not merely linked) by confirmed writes, per direction: equal in two equal worlds."""
    store = world.pipeline.store()
    try:
        with store.transaction() as connection:
            rows = connection.execute(
                sa.select(tables.activity_log.c.direction, tables.activity_log.c.details).where(
                    tables.activity_log.c.action == "created"
                )
            ).all()
    finally:
        store.close()
    return Counter(str(row.direction) for row in rows if "op_id" in json.loads(row.details or "{}"))


def end_state_differences(expected: dict[str, Any], world: World) -> list[str]:
    """How ``world``'s settled end state differs from the reference snapshot ``expected`` (empty: the same)."""
    actual = snapshot(world)
    problems = []
    extra_persons = {e: n for e, n in actual["persons"].items() if n > expected["persons"].get(e, 0)}
    extra_rows = {e: n for e, n in actual["rows"].items() if n > expected["rows"].get(e, 0)}
    if extra_persons:
        problems.append(f"duplicate persons: {extra_persons}")
    if extra_rows:
        problems.append(f"duplicate leads or contacts: {extra_rows}")
    for part in ("persons", "rows"):
        missing = {e: n for e, n in expected[part].items() if actual[part].get(e, 0) < n}
        if missing:
            problems.append(f"missing {part}: {missing}")
    for part in ("person_values", "row_values"):
        for key in sorted(set(expected[part]) | set(actual[part])):
            if expected[part].get(key) != actual[part].get(key):
                problems.append(f"{key}: expected {expected[part].get(key)}, got {actual[part].get(key)}")
    return problems
