"""The one sink: stages every batch in the store, inside one transaction, before STATE moves on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from target_mktdyn_merge.core.crashpoints import crash_point
from target_mktdyn_merge.core.vocabulary import STREAMS
from target_mktdyn_merge.plugin.sdk import DatelikeOnceSink
from target_mktdyn_merge.plugin.singer_input import QuietRecordValidator
from target_mktdyn_merge.sync.reconcile import ReconcileBoundError, still_present

if TYPE_CHECKING:
    from target_mktdyn_merge.plugin.target import TargetMktdynMerge


class StagingSink(DatelikeOnceSink):
    """Stages records of one stream; the SDK emits STATE only after ``process_batch`` returns."""

    MAX_SIZE_DEFAULT = 5000

    def __init__(self, target: TargetMktdynMerge, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self.owner = target  # the SDK keeps no reference; the store and run id live on the target
        # The SCHEMA carries only the properties the tap's catalog selects, and comes with every extraction (even
        # one with no record): recorded now, a deselected field is unknown to the merge at once (docs/architecture.md
        # §10).
        self.owner.store.record_selection(self.stream_name, self.schema.get("properties") or {})
        #: Records staged by this sink and when its first batch began (the staging rate in the progress log).
        self.staged_total = 0
        self.started = time.monotonic()

    def get_validator(self) -> Any:
        """The SDK's validator, failing with the field's name instead of logging a traceback."""
        validator = super().get_validator()
        return None if validator is None else QuietRecordValidator(validator, self.schema)

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always keep ``_sdc_deleted_at``: without it the SDK strips the delete marker (docs/architecture.md §9.3)."""
        return True

    def activate_version(self, new_version: int) -> None:
        """A full extraction ended: stage what is buffered, then treat keys it did not return as deletes.

        Bounded and confirmed (:mod:`target_mktdyn_merge.sync.reconcile`): past the bound the run stops with one
        line, having marked nothing; within it only records a direct read by id no longer finds are deleted.
        """
        self.owner.drain_one(self)
        store = self.owner.store
        missing, live = store.reconcile_candidates(self.stream_name, new_version)
        if not missing:
            return
        try:
            self.owner.settings.reconcile.check(self.stream_name, len(missing), live)
        except ReconcileBoundError as exc:
            self.owner.stop(str(exc), exc)
        settings = self.owner.settings
        present = still_present(settings.marketo_connection, settings.dynamics_connection, self.stream_name, missing)
        if present:
            self.logger.warning(
                "key reconciliation: %d %s record(s) absent from this full extraction still exist when read by "
                "id (%s); they are not treated as deleted",
                len(present),
                self.stream_name,
                ", ".join(sorted(present)[:10]),
            )
        gone = store.mark_deleted(self.stream_name, [m for m in missing if m not in present], self.owner.run_id)
        if gone:
            self.logger.warning(
                "key reconciliation: %d %s record(s) staged before were absent from this full extraction; "
                "not found when read by id, they are treated as deleted",
                gone,
                self.stream_name,
            )

    def process_batch(self, context: dict[str, Any]) -> None:
        """Commit the batch to the store (the merge reads the store, never the stream)."""
        records = context.get("records", [])
        if not records:
            return
        result = self.owner.store.stage(self.stream_name, records, self.owner.run_id)
        crash_point("stage-after-commit")  # committed, STATE not yet out: the replay must be harmless
        if result.future:
            self.logger.warning(
                "%d %s record(s) carry a source timestamp more than a day ahead of now (%s%s); staged as of now, "
                "so later versions of them are not taken for older",
                len(result.future),
                self.stream_name,
                ", ".join(f"{STREAMS[self.stream_name].key}={key}" for key in result.future[:10]),
                ", ..." if len(result.future) > 10 else "",
            )
        self.staged_total += len(records)
        elapsed = max(time.monotonic() - self.started, 1e-3)
        self.logger.info(
            "staged %d %s record(s): %d new, %d changed, %d unchanged, %d older than staged; %d so far, %.0f/s",
            len(records),
            self.stream_name,
            result.inserted,
            result.updated,
            result.unchanged,
            result.older_ignored,
            self.staged_total,
            self.staged_total / elapsed,
        )
