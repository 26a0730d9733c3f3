"""Planning in small batches decides exactly what one big batch does (issue 18: what a pass has done lives in
the store, ``run_marks``, not in Python sets; candidates' links are read without their baselines).

Both systems are staged once through the plugin CLIs (no merge), the store is copied, and each copy is planned
in-process with a different batch size: across batches, a person reached through its lead and its contact is
decided once and one email gets one person's create, as within one batch.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient
from target_mktdyn_merge.plugin.settings import merge_settings
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.sync.engine import read_metadata
from target_mktdyn_merge.sync.planner import Planner, PlanSettings

from tests.target.worlds import World


def _plan(store_url: str, config: dict[str, Any], batch_size: int) -> tuple[Counter[str], list[tuple[Any, ...]]]:
    settings = merge_settings(config)
    store = Store(store_url)
    marketo = MarketoClient(settings.marketo_connection())
    dynamics = DataverseClient(settings.dynamics_connection())
    try:
        run_id = store.start_run("merge")
        plan = PlanSettings(
            run_id=run_id,
            run_number=1,
            dry_run=False,
            field_map=settings.field_map,
            policy=settings.policy,
            metadata=read_metadata(marketo, dynamics),
            sync_filter_field=settings.sync_filter_field,
            batch_size=batch_size,
        )
        counts = Planner(store, plan).run()
        with store.transaction() as connection:
            log = tables.activity_log
            decisions = sorted(
                connection.execute(
                    sa.select(log.c.action, log.c.person_id, log.c.entity, log.c.dynamics_id, log.c.direction)
                ).all(),
                key=repr,
            )
            outbox = tables.outbox
            writes = sorted(
                connection.execute(sa.select(outbox.c.system, outbox.c.action, outbox.c.payload)).all(), key=repr
            )
            assert connection.execute(sa.select(sa.func.count()).select_from(tables.run_marks)).scalar() == 0
        return counts, [tuple(row) for row in [*decisions, *writes]]
    finally:
        marketo.close()
        dynamics.close()
        store.close()


def test_small_batches_decide_exactly_what_one_batch_decides(tmp_path: Path) -> None:
    world = World(tmp_path, {}, persons=60, dynamics_only=12, overlap=0.7)
    try:
        pipeline = world.pipeline
        staged = pipeline.load("target-stage", pipeline.extract("tap-marketo-leads"), "tap-marketo-leads")
        assert staged.returncode == 0, staged.stderr[-2000:]
        staged = pipeline.load("target-stage", pipeline.extract("tap-dynamics-leads"), "tap-dynamics-leads")
        assert staged.returncode == 0, staged.stderr[-2000:]
        source = Path(pipeline.store_url.removeprefix("sqlite:///"))
        results = []
        for batch_size in (500, 7):
            copy = tmp_path / f"plan-{batch_size}.db"
            shutil.copy(source, copy)
            results.append(_plan(f"sqlite:///{copy}", {**pipeline.configs["target-merge"]}, batch_size))
        (counts, decisions), (small_counts, small_decisions) = results
        assert counts["linked"] > 10  # many pairs, over several batches of 7
        assert any(d[1] == "create" for d in decisions)  # and creates, whose emails are marks too
        assert small_counts == counts
        assert small_decisions == decisions
    finally:
        world.close()
