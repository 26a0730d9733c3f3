"""The request queue in the store, on both backends: durable, bounded, oldest first, attempts counted."""

from __future__ import annotations

from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.realtime_queue import answer_of, enqueue, finish, queued_count, take


def test_the_queue_is_bounded_ordered_and_answers_are_kept(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        first = enqueue(store, "sync_person", "11", False, limit=2)
        second = enqueue(store, "full_sync", "12", True, limit=2)
        assert first is not None
        assert second is not None
        assert second > first
        assert enqueue(store, "sync_person", "13", False, limit=2) is None  # full: nothing written
        assert queued_count(store) == 2
        taken = take(store, 10)
        assert [(r.request_id, r.kind, r.person_id, r.dry_run, r.attempts) for r in taken] == [
            (first, "sync_person", "11", False, 1),
            (second, "full_sync", "12", True, 1),
        ]
        # Taken but not finished (the process died): still queued, taken again with one more attempt.
        assert [r.attempts for r in take(store, 10)] == [2, 2]
        finish(store, "run-1", {first: ("done", {"status": "created", "dynamicsId": "abc"})})
        assert answer_of(store, first) == ("done", {"status": "created", "dynamicsId": "abc"})
        assert answer_of(store, second) == ("queued", {})
        assert answer_of(store, 999_999) is None
        assert [r.request_id for r in take(store, 10)] == [second]
        assert enqueue(store, "sync_person", "13", False, limit=2) is not None  # room again
    finally:
        store.close()
