"""Key reconciliation: deletes missed while a delta token expired are found by the full resync (architecture §3, §4)."""

from __future__ import annotations

from pathlib import Path

from tests.target.worlds import World


def test_a_delete_missed_during_an_expired_token_is_found_by_the_full_resync(tmp_path: Path) -> None:
    world = World(tmp_path, {}, persons=40, dynamics_only=4)
    try:
        world.sync()
        gone, kept = world.in_sync("lead")[:2]
        # The lead is deleted, then the delta token expires before the next run: change tracking will never
        # report this delete; only the full extraction's ACTIVATE_VERSION can reveal it.
        world.admin.dynamics.delete("lead", gone["dynamics_id"])
        world.admin.dynamics.advance_clock(8 * 86400)
        result = world.sync()
        assert "key reconciliation: 1 dynamics_leads record(s)" in result.stderr
        log = [a for a in world.pipeline.activities() if a["person_id"] == gone["marketo_id"]]
        assert [a["action"] for a in log] == ["unlinked"]
        assert "Dynamics lead was deleted" in log[0]["rule"]
        linked = {p["marketo_id"]: p["dynamics_id"] for p in world.pairs()}
        assert gone["marketo_id"] not in linked
        assert linked[kept["marketo_id"]] == kept["dynamics_id"]
        store = world.pipeline.store()
        staged = store.staged_record("dynamics_leads", gone["dynamics_id"])
        still = store.staged_record("dynamics_leads", kept["dynamics_id"])
        store.close()
        assert staged is not None
        assert staged.deleted
        assert still is not None
        assert not still.deleted
    finally:
        world.close()
