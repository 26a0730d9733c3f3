"""A quiet run reuses the field metadata an earlier run kept in the store (issue 18: the cost of a quiet run).

Through the plugin CLIs against the sandbox: the merging leg's metadata requests are counted by the sandbox
after both extractions (the taps' own discovery is theirs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.metadata_answers import StoredMetadataAnswers

from tests.target.worlds import World


def _metadata_requests(world: World) -> tuple[int, int]:
    return (
        world.admin.marketo.stats()["requests_by_kind"].get("metadata", 0),
        world.admin.dynamics.stats()["requests_by_kind"].get("metadata", 0),
    )


def test_the_merge_reads_field_metadata_once_then_reuses_it_until_it_is_too_old(tmp_path: Path) -> None:
    world = World(tmp_path, {"marketo_activity_type": ""}, persons=12, dynamics_only=2)  # no activity types read
    try:
        first = world.sync(before_merge=world.reset_stats)
        marketo, dynamics = _metadata_requests(world)
        assert marketo == 2  # describe and describe2
        assert dynamics >= 3  # each table's columns, then one request per column type
        assert f"field metadata: {marketo + dynamics} request(s)" in first.stderr

        quiet = world.sync(before_merge=world.reset_stats)
        assert _metadata_requests(world) == (0, 0)
        assert "field metadata: 0 request(s)" in quiet.stderr

        world.pipeline.configs["target-merge"]["metadata_max_age_minutes"] = 0  # read every run
        world.sync(before_merge=world.reset_stats)
        assert _metadata_requests(world) == (marketo, dynamics)
    finally:
        world.close()


def test_a_kept_answer_older_than_the_maximum_age_is_not_served(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    try:
        answers = StoredMetadataAnswers(store, timedelta(minutes=60))
        assert answers.get("https://org.example/api/data/v9.2/EntityDefinitions") is None
        answers.put("https://org.example/api/data/v9.2/EntityDefinitions", {"value": [{"LogicalName": "lead"}]})
        answers.put("https://org.example/api/data/v9.2/EntityDefinitions", {"value": [{"LogicalName": "contact"}]})
        assert answers.get("https://org.example/api/data/v9.2/EntityDefinitions") == {
            "value": [{"LogicalName": "contact"}]
        }  # the newer answer replaced the older one
        with store.transaction() as connection:
            connection.execute(
                sa.update(tables.metadata_answers).values(fetched_at=utc_iso(datetime.now(UTC) - timedelta(hours=2)))
            )
        assert answers.get("https://org.example/api/data/v9.2/EntityDefinitions") is None
        assert StoredMetadataAnswers(store, timedelta(0)).get("anything") is None
    finally:
        store.close()
