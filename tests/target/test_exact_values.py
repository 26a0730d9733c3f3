"""Values arrive byte-exact in both directions: edge spaces and a trailing CR are not trimmed on write (issue 22, 3).

End to end through the plugin CLIs and the sandbox: users put such values in each system, the job runs, and
the other system holds them exactly (read through the sandbox's admin API); the next run writes nothing (the
comparison, which trims, sees no difference to send back).
"""

from __future__ import annotations

from pathlib import Path

from tests.target.worlds import World

PERSON_EDIT = {"title": "  Head of Sales  ", "city": " Köln"}
CONTACT_EDIT = {"jobtitle": "Lead engineer\r", "address1_city": "Paris "}


def test_edge_spaces_and_a_trailing_cr_arrive_exactly_both_ways(tmp_path: Path) -> None:
    world = World(tmp_path, {}, persons=20, dynamics_only=2)
    try:
        world.sync()
        lead = world.in_sync("lead")[0]
        contact = world.in_sync("contact")[0]
        world.admin.marketo.edit("person", lead["marketo_id"], PERSON_EDIT)
        world.admin.dynamics.edit("contact", contact["dynamics_id"], CONTACT_EDIT)
        world.sync()
        row = world.row("lead", lead["dynamics_id"])
        assert row["jobtitle"] == PERSON_EDIT["title"]
        assert row["address1_city"] == PERSON_EDIT["city"]
        person = world.person(contact["marketo_id"])
        assert person["title"] == CONTACT_EDIT["jobtitle"]
        assert person["city"] == CONTACT_EDIT["address1_city"]
        world.reset_stats()
        world.sync()
        assert world.writes() == (0, 0)  # no ping-pong on the trimmed comparison
        assert world.row("lead", lead["dynamics_id"])["jobtitle"] == PERSON_EDIT["title"]
        assert world.person(contact["marketo_id"])["title"] == CONTACT_EDIT["jobtitle"]
    finally:
        world.close()


def test_the_word_null_is_a_value_both_ways(tmp_path: Path) -> None:
    """Issue 22, item 3: an export writes "null" for empty and for the word; the tap re-reads such persons."""
    world = World(tmp_path, {}, persons=20, dynamics_only=2)
    try:
        world.sync()
        lead = world.in_sync("lead")[0]
        contact = world.in_sync("contact")[0]
        world.admin.marketo.edit("person", lead["marketo_id"], {"title": "null"})
        world.admin.dynamics.edit("contact", contact["dynamics_id"], {"jobtitle": "null"})
        world.sync()
        assert world.row("lead", lead["dynamics_id"])["jobtitle"] == "null"
        assert world.person(contact["marketo_id"])["title"] == "null"
        world.reset_stats()
        world.sync()  # the person's "null" comes back through the export: it must not read as a cleared title
        assert world.writes() == (0, 0)
        assert world.row("contact", contact["dynamics_id"])["jobtitle"] == "null"
        assert world.row("lead", lead["dynamics_id"])["jobtitle"] == "null"
    finally:
        world.close()


def test_without_the_null_text_check_the_tap_saves_its_rereads_and_reads_the_word_as_empty(tmp_path: Path) -> None:
    """Issue 18: ``null_text_check: false`` trades the word "null" for one ``leads.json`` call per 300 persons."""
    world = World(tmp_path, {}, persons=20, dynamics_only=2)
    try:
        world.sync()
        lead = world.in_sync("lead")[0]
        world.admin.marketo.edit("person", lead["marketo_id"], {"title": "null"})
        world.pipeline.configs["tap-marketo-leads"]["null_text_check"] = False
        world.reset_stats()
        world.sync()
        reads = world.admin.marketo.stats()["requests"]
        assert "leads by filter" not in reads  # the export alone: no person read again by id
        assert world.row("lead", lead["dynamics_id"]).get("jobtitle") is None  # the documented cost: read as empty
        world.pipeline.configs["tap-marketo-leads"]["null_text_check"] = True
        world.admin.marketo.edit("person", lead["marketo_id"], {"title": "null"})
        world.reset_stats()
        world.sync()
        assert world.admin.marketo.stats()["requests"].get("leads by filter", 0) >= 1
        assert world.row("lead", lead["dynamics_id"])["jobtitle"] == "null"
    finally:
        world.close()
