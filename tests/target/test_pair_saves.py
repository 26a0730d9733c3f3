"""A pair the merge left as it was is not written again (issue 18: a rerun's echoes rewrote every pair).

Both backends. The statements are captured from the engine, so the test sees what reached the database.
"""

from __future__ import annotations

from target_mktdyn_merge.core.baseline import BaselineEntry
from target_mktdyn_merge.core.records import Pair
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.pairs import pairs_by_person, save_pairs

from tests.target.statements import captured


def load(store: Store, *person_ids: str) -> dict[str, Pair]:
    with store.transaction() as connection:
        return pairs_by_person(connection, person_ids)


def test_only_changed_pairs_are_written(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        with store.transaction() as connection:
            save_pairs(
                connection,
                [
                    Pair("1", "lead", "a", "marketo", baseline={"title": BaselineEntry("Dev", "Dev")}),
                    Pair("2", "lead", "b", "marketo", baseline={"title": BaselineEntry("Ops", "Ops")}),
                    Pair("3", "contact", "c", "dynamics"),
                ],
                "run-1",
            )
        pairs = load(store, "1", "2", "3")
        pairs["2"].baseline["title"] = BaselineEntry("CTO", "CTO")  # changed in place, as a merge does
        pairs["3"].first_merge_done = True
        with captured(store, "UPDATE", "pairs") as updates, store.transaction() as connection:
            save_pairs(connection, pairs.values(), "run-2")
        assert len(updates) == 2
        again = load(store, "1", "2", "3")
        assert again["1"].baseline == {"title": BaselineEntry("Dev", "Dev")}
        assert again["2"].baseline == {"title": BaselineEntry("CTO", "CTO")}
        assert again["3"].first_merge_done

        with captured(store, "UPDATE", "pairs") as updates, store.transaction() as connection:
            save_pairs(connection, again.values(), "run-3")  # nothing changed since it was read
        assert updates == []
    finally:
        store.close()


def test_a_pair_saved_then_changed_back_is_written_again(store_url: str) -> None:
    """What the store holds is what was last saved, not what was first read."""
    store = Store(store_url)
    store.migrate()
    try:
        with store.transaction() as connection:
            save_pairs(connection, [Pair("1", "lead", "a", "marketo", baseline={"t": BaselineEntry("x", "x")})], "r")
        pair = load(store, "1")["1"]
        with store.transaction() as connection:
            pair.baseline["t"] = BaselineEntry("y", "y")
            save_pairs(connection, [pair], "r")
            pair.baseline["t"] = BaselineEntry("x", "x")
            save_pairs(connection, [pair], "r")
        assert load(store, "1")["1"].baseline == {"t": BaselineEntry("x", "x")}
    finally:
        store.close()
