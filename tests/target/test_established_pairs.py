"""The mass-change guard counts established pairs only: linked and first merged by earlier finished runs.

A run whose Marketo export was cut short still merges; a Dynamics row whose person it had not staged yet gets a
create that Marketo refuses as a duplicate, and the existing person is linked without a first merge. The next
run does that first merge, which may change many fields by design; counted as changes to established pairs it
stopped the run as a mass change (tests/target/test_crash_matrix.py, after-1-persons). Both backends.
"""

from __future__ import annotations

import sqlalchemy as sa
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import established_changes
from target_mktdyn_merge.store.pairs import save_pairs


def owe_update(connection: sa.Connection, run_id: str, pair: Pair) -> None:
    now = now_iso()
    connection.execute(
        sa.insert(tables.outbox).values(
            run_id=run_id,
            pair_id=pair.pair_id,
            system="dynamics",
            action="update",
            entity=pair.entity,
            target_id=pair.dynamics_id,
            payload="{}",
            status="planned",
            created_at=now,
            updated_at=now,
        )
    )


def test_only_pairs_first_merged_by_a_settled_earlier_run_are_established(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        earlier = store.start_run("merge", "2026-12-01T00:00:00Z")
        crashed = store.start_run("merge", "2026-12-01T00:01:00Z")
        store.finish_run(crashed, "failed", error="killed")
        with store.transaction() as connection:
            linked = {
                name: Pair(name, "lead", f"L-{name}", "marketo", first_merge_done=first, first_merged_run=by)
                for name, first, by in [
                    ("merged-earlier", True, earlier),
                    ("merged-before-the-column", True, None),
                    ("linked-without-a-first-merge", False, None),
                    ("first-merged-by-a-crashed-run", True, crashed),
                ]
            }
            save_pairs(connection, linked.values(), earlier)
        store.finish_run(earlier, "succeeded")
        now = store.start_run("merge", "2026-12-01T00:02:00Z")
        with store.transaction() as connection:
            # This run does the first merge of the pair linked without one: it is not established.
            linked["linked-without-a-first-merge"].first_merge_done = True
            linked["linked-without-a-first-merge"].first_merged_run = now
            save_pairs(connection, linked.values(), now)
            for pair in linked.values():
                owe_update(connection, now, pair)
            assert established_changes(connection, now) == (2, 2)
        store.finish_run(now, "succeeded")
        # Once a merge has succeeded after the crashed run, that run's first merges are settled too.
        later = store.start_run("merge", "2026-12-01T00:03:00Z")
        with store.transaction() as connection:
            for pair in linked.values():
                owe_update(connection, later, pair)
            assert established_changes(connection, later) == (4, 4)
    finally:
        store.close()
