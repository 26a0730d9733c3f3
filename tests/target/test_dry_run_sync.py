"""The merge in dry run through the real taps and the real target CLI against the sandbox (issue 6).

One sandbox per store backend (SQLite, PostgreSQL): an initial sync links pairs, then users of both products
edit, and a second sync must plan exactly the writes the merge rules (docs/architecture.md §4) call for, while nothing
at all is written to either system.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from mktdyn_sandbox.admin_client import SandboxAdmin
from mktdyn_sandbox.sandbox import Sandbox, SandboxOptions
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from target_mktdyn_merge.store import schema as tables

from tests.target.pipeline import Pipeline, connection_config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_store_url: str) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dry-run")
    sandbox = Sandbox(
        SandboxOptions(
            directory=root / "sandbox",
            persons=80,
            dynamics_only=12,
            overlap=0.7,
            seed=21,
            limits=False,
            export_delay=0.05,
        )
    )
    info = sandbox.start()
    admin = SandboxAdmin(info)
    config = connection_config(info)
    marketo = MarketoClient(MarketoConnection.from_config(config, "marketo_"))
    dynamics = DataverseClient(DataverseConnection.from_config(config, "dynamics_"))
    pipeline = Pipeline(info, root / "work", {"dry_run": True}, store_url=module_store_url)
    first = pipeline.sync()
    yield {
        "info": info,
        "admin": admin,
        "marketo": marketo,
        "dynamics": dynamics,
        "pipeline": pipeline,
        "first": first,
        "edits": {},
    }
    marketo.close()
    dynamics.close()
    admin.close()
    sandbox.stop()


def pairs(pipeline: Pipeline) -> list[dict[str, Any]]:
    store = pipeline.store()
    with store.transaction() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(tables.pairs)).all()]
    store.close()
    for row in rows:
        row["baseline"] = json.loads(row["baseline"])
    return rows


SEED_VARIANTS = {"title", "phone", "city", "firstName", "lastName"}  # fields the seed makes differ


def in_sync_pairs(pipeline: Pipeline, entity: str, field: str) -> list[dict[str, Any]]:
    """Pairs whose fields all agreed after the first sync (no seeded difference to muddy the test)."""
    return [
        p
        for p in pairs(pipeline)
        if p["entity"] == entity and SEED_VARIANTS <= set(p["baseline"]) and p["baseline"][field]["marketo"] is not None
    ]


def by_person(activities: list[dict[str, Any]], person_id: str) -> list[dict[str, Any]]:
    return [a for a in activities if a["person_id"] == str(person_id)]


@pytest.fixture(scope="module")
def second(world: dict[str, Any]) -> dict[str, Any]:
    """Users edit both systems, then the job runs again (still in dry run)."""
    admin: SandboxAdmin = world["admin"]
    pipeline: Pipeline = world["pipeline"]
    marketo: MarketoClient = world["marketo"]
    dynamics: DataverseClient = world["dynamics"]
    edits: dict[str, Any] = world["edits"]
    leads = in_sync_pairs(pipeline, "lead", "title")
    contacts = in_sync_pairs(pipeline, "contact", "title")
    assert len(leads) >= 3, "the seed must give linked, in-sync leads"
    assert contacts, "the seed must give linked, in-sync contacts"
    collision_lead, different_fields, qualified = leads[0], leads[1], leads[2]
    collision_contact = contacts[0]
    for pair, name in ((collision_lead, "lead"), (collision_contact, "contact")):
        admin.marketo.edit("person", pair["marketo_id"], {"title": f"Marketo title for {name}"})
        admin.dynamics.edit(pair["entity"], pair["dynamics_id"], {"jobtitle": f"Dynamics title for {name}"})
    admin.marketo.edit("person", different_fields["marketo_id"], {"firstName": "Mélanie"})
    admin.dynamics.edit("lead", different_fields["dynamics_id"], {"jobtitle": "Chief O'Neil Officer"})
    dynamics.qualify_lead(qualified["dynamics_id"])
    # A flagged person with no match, and a flagged person whose email a Dynamics lead already has.
    dynamics.create(
        "leads", {"lastname": "Existing", "subject": "Existing lead", "emailaddress1": "existing@lead.example"}
    )
    created = marketo.sync_leads(
        "createOnly",
        [
            {"email": "new.flagged@person.example", "firstName": "Nova", "lastName": "Flagged", "syncToDynamics": True},
            {"email": "EXISTING@lead.example", "firstName": "Exi", "lastName": "Sting", "syncToDynamics": True},
            {"email": "twice@ambiguous.example", "firstName": "Amb", "lastName": "Iguous"},
        ],
        "email",
    )
    assert [o.status for o in created] == ["created", "created", "created"]
    for name in ("One", "Two"):
        dynamics.create("leads", {"lastname": name, "subject": "dup", "emailaddress1": "twice@ambiguous.example"})
    excluded = dynamics.create(
        "leads", {"lastname": "Excluded", "subject": "x", "emailaddress1": "no@sync.example", "new_synctomkto": False}
    )
    included = dynamics.create(
        "leads", {"lastname": "Included", "subject": "y", "emailaddress1": "yes@sync.example", "new_synctomkto": True}
    )
    admin.marketo.reset_stats()
    admin.dynamics.reset_stats()
    # Export windows end on a whole second; an edit in the window's last second is seen by the next run
    # (the windows overlap), so step past it to see every edit in this one.
    time.sleep(1.1)
    result = pipeline.sync()
    edits.update(
        collision_lead=collision_lead,
        collision_contact=collision_contact,
        different_fields=different_fields,
        qualified=qualified,
        new_person=str(created[0].id),
        existing_person=str(created[1].id),
        ambiguous=str(created[2].id),
        excluded=excluded["leadid"],
        included=included["leadid"],
    )
    return {
        "result": result,
        "activities": pipeline.activities(),
        "stats": (admin.marketo.stats(), admin.dynamics.stats()),
    }


def test_initial_sync_links_pairs_and_reports(world: dict[str, Any]) -> None:
    assert "DRY RUN" in world["first"].stderr
    assert len(pairs(world["pipeline"])) > 20


def test_collision_on_a_lead_plans_marketos_value(world: dict[str, Any], second: dict[str, Any]) -> None:
    pair = world["edits"]["collision_lead"]
    mine = by_person(second["activities"], pair["marketo_id"])
    collisions = [a for a in mine if a["action"] == "collision"]
    assert [(c["fields"][0]["field"], c["winner"]) for c in collisions] == [("title", "marketo")]
    update = next(a for a in mine if a["action"] == "updated")
    assert update["direction"] == "to_dynamics"
    assert {"field": "jobtitle", "old": "Dynamics title for lead", "new": "Marketo title for lead"} in update["fields"]


def test_collision_on_a_contact_plans_dynamics_value(world: dict[str, Any], second: dict[str, Any]) -> None:
    pair = world["edits"]["collision_contact"]
    mine = by_person(second["activities"], pair["marketo_id"])
    collisions = [a for a in mine if a["action"] == "collision"]
    assert [(c["fields"][0]["field"], c["winner"]) for c in collisions] == [("title", "dynamics")]
    update = next(a for a in mine if a["action"] == "updated")
    assert update["direction"] == "to_marketo"
    assert {"field": "title", "old": "Marketo title for contact", "new": "Dynamics title for contact"} in update[
        "fields"
    ]


def test_edits_to_different_fields_both_survive(world: dict[str, Any], second: dict[str, Any]) -> None:
    mine = by_person(second["activities"], world["edits"]["different_fields"]["marketo_id"])
    assert not [a for a in mine if a["action"] == "collision"]
    updates = {a["direction"]: a["fields"] for a in mine if a["action"] == "updated"}
    assert [c["new"] for c in updates["to_dynamics"] if c["field"] == "firstname"] == ["Mélanie"]
    assert [c["new"] for c in updates["to_marketo"] if c["field"] == "title"] == ["Chief O'Neil Officer"]


def test_flagged_person_plans_one_lead_and_existing_lead_is_linked(
    world: dict[str, Any], second: dict[str, Any]
) -> None:
    new = by_person(second["activities"], world["edits"]["new_person"])
    assert [a["action"] for a in new] == ["created"]
    assert new[0]["direction"] == "to_dynamics"
    assert {"field": "subject", "old": None, "new": "Marketo person Nova Flagged"} in new[0]["fields"]
    existing = by_person(second["activities"], world["edits"]["existing_person"])
    assert "linked" in [a["action"] for a in existing]
    assert "created" not in [a["action"] for a in existing]


def test_ambiguous_email_is_skipped_and_logged(world: dict[str, Any], second: dict[str, Any]) -> None:
    mine = by_person(second["activities"], world["edits"]["ambiguous"])
    assert [a["action"] for a in mine] == ["ambiguous_match"]
    assert len(mine[0]["details"]["candidates"]) == 2


def test_qualified_lead_moves_the_pair_to_its_contact(world: dict[str, Any], second: dict[str, Any]) -> None:
    pair = world["edits"]["qualified"]
    mine = by_person(second["activities"], pair["marketo_id"])
    moved = next(a for a in mine if a["action"] == "linked")
    assert moved["entity"] == "contact"
    assert moved["details"].get("moved_from_lead") is True
    stored = {p["marketo_id"]: p for p in pairs(world["pipeline"])}[pair["marketo_id"]]
    assert stored["entity"] == "contact"
    assert stored["authority"] == "dynamics"


def test_sync_filter_excludes(world: dict[str, Any], second: dict[str, Any]) -> None:
    log = second["activities"]
    excluded = [a for a in log if a["dynamics_id"] == world["edits"]["excluded"]]
    included = [a for a in log if a["dynamics_id"] == world["edits"]["included"]]
    assert [a["action"] for a in excluded] == ["skipped"]
    assert [(a["action"], a["direction"]) for a in included] == [("created", "to_marketo")]


def test_nothing_is_written_to_either_system(second: dict[str, Any]) -> None:
    marketo, dynamics = second["stats"]
    assert marketo["records_written_total"] == 0
    assert dynamics["records_written_total"] == 0
    assert marketo["requests_by_kind"].get("write", 0) == 0
    assert dynamics["requests_by_kind"].get("write", 0) == 0
    assert "DRY RUN" in second["result"].stderr


def test_replayed_input_changes_nothing(world: dict[str, Any], second: dict[str, Any]) -> None:
    pipeline: Pipeline = world["pipeline"]
    store = pipeline.store()
    with store.transaction() as connection:
        before = connection.execute(sa.select(sa.func.max(tables.staged.c.changed_seq))).scalar()
    store.close()
    replay = pipeline.load("target-merge", pipeline.workdir / "tap-dynamics-leads.singer", "tap-dynamics-leads")
    assert replay.returncode == 0, replay.stderr[-2000:]
    store = pipeline.store()
    with store.transaction() as connection:
        after = connection.execute(sa.select(sa.func.max(tables.staged.c.changed_seq))).scalar()
    store.close()
    assert after == before

    def plan(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                a["action"],
                a["person_id"] or "",
                a["dynamics_id"] or "",
                a["direction"] or "",
                json.dumps(a["fields"], sort_keys=True),
            )
            for a in items
            if a["action"] != "linked"
        )

    assert plan(pipeline.activities()) == plan(second["activities"])
