"""target-mktdyn-merge: stages Marketo persons and Dynamics leads/contacts, then merges and writes back."""

from __future__ import annotations

from typing import Any, NoReturn

from mktdyn_common.cli import plugin_main
from mktdyn_common.errors import ConfigurationError, MktdynError
from mktdyn_common.redact import protect_secrets, redact
from mktdyn_common.state import EXTRACTION, FULL, INCREMENTAL
from singer_sdk import Sink

from target_mktdyn_merge.core.values import earliest_iso, now_iso
from target_mktdyn_merge.core.vocabulary import STREAMS, UnknownStreamError
from target_mktdyn_merge.plugin.sdk import MessageObservingTarget
from target_mktdyn_merge.plugin.settings import CONFIG_SCHEMA, merge_settings
from target_mktdyn_merge.plugin.singer_input import CheckedSingerReader, SingerInputError
from target_mktdyn_merge.plugin.sinks import StagingSink
from target_mktdyn_merge.store.connection import StoreError
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.lock import StoreLockedError, write_lock
from target_mktdyn_merge.sync.merge_settings import MergeSettings


class TargetMktdynMerge(MessageObservingTarget):
    """Keeps Marketo persons and Dynamics leads/contacts in step, both ways, field by field."""

    name = "target-mktdyn-merge"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = StagingSink
    message_reader_class = CheckedSingerReader

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.message_reader, CheckedSingerReader):
            self.message_reader.on_bad_input = self.refuse_input
        self.max_parallelism = 1  # one writer per store connection; staging is I/O on one database anyway
        protect_secrets(
            self.config.get(k)
            for k in ("marketo_client_secret", "dynamics_client_secret", "dynamics_password", "alert_webhook_url")
        )
        self._store: Store | None = None
        self._settings: MergeSettings | None = None
        self._run_id: str | None = None
        #: When this invocation (and so its tap, which Meltano starts with it) started: its run's start.
        self._started_at = now_iso()
        #: Nothing this run stages was read before this: the start, or the first record's ``time_extracted`` if
        #: earlier (:meth:`observe_record`).
        self._read_from = self._started_at
        self._seen_record = False
        #: How each stream was extracted this run, from the tap's last STATE (``mktdyn_common.state``).
        self.extraction: dict[str, str] = {}

    @property
    def settings(self) -> MergeSettings:
        """The run's settings, built once from the validated config (a bad one stops the run, naming it)."""
        if self._settings is None:
            try:
                self._settings = merge_settings(self.config)
            except ConfigurationError as exc:
                self.stop(str(exc), exc)
        return self._settings

    @property
    def store(self) -> Store:
        """The store, opened and migrated on first use (not at import or construction)."""
        if self._store is None:
            store = Store(self.settings.store_url)
            store.migrate()
            self._store = store
        return self._store

    @property
    def run_id(self) -> str:
        """The run id of this invocation; the merging invocation owns the job's run id (docs/architecture.md §9.5)."""
        if self._run_id is None:
            mode = "stage" if not self.settings.merge else ("dry_run" if self.settings.dry_run else "merge")
            self._run_id = self.store.start_run(mode, self._started_at, read_from=self._read_from)
        return self._run_id

    def observe_record(self, message_dict: dict[str, Any]) -> None:
        """Before the run starts, move when it read from back to the first record's ``time_extracted``, if earlier.

        "Nothing this run stages was read before ``read_from``" decides which confirmed writes an extraction has
        seen and whether a lead found at write time appeared since the extraction. Under Meltano the tap starts
        with the target, so the process start holds; a target fed later (a file of the tap's output, a retried
        load) must use when the tap read, which the Singer RECORD message carries. The run starts at the first
        drain, after the first record, which a tap emits first (so only that record is read). The run's
        ``started_at`` stays the process start: runs are ordered and timed by it.
        """
        if not self._seen_record and self._run_id is None:
            self._read_from = earliest_iso(self._read_from, message_dict.get("time_extracted"))
        self._seen_record = True

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Refuse streams the merge does not know, with a message that says what to do."""
        if stream_name not in STREAMS:
            raise UnknownStreamError(stream_name)
        return super().get_sink_class(stream_name)

    def observe_state(self, value: Any) -> None:
        """Note how each stream was extracted (its bookmark's ``extraction``) before the SDK handles STATE."""
        bookmarks = value.get("bookmarks") if isinstance(value, dict) else None
        if isinstance(bookmarks, dict):
            for stream, bookmark in bookmarks.items():
                if isinstance(bookmark, dict) and bookmark.get(EXTRACTION) in (FULL, INCREMENTAL):
                    self.extraction[str(stream)] = str(bookmark[EXTRACTION])

    def check_store_matches_bookmarks(self) -> None:
        """Refuse an incremental extraction into a store that never staged the stream in full (architecture §10).

        Meltano keeps the taps' bookmarks; the store keeps what they extracted. With the store deleted or
        replaced (and the bookmarks kept) a tap extracts only recent changes, and a merge from that would know
        no links or baselines and end somewhere a clean run does not. A full extraction marks the stream known.
        """
        streams = [stream for stream, how in sorted(self.extraction.items()) if stream in STREAMS]
        for stream in streams:
            if self.extraction[stream] == FULL:
                self.store.mark_full_extraction(stream)
        unknown = [s for s in streams if self.extraction[s] == INCREMENTAL and not self.store.knows_stream(s)]
        if unknown:
            self.stop(
                f"the store at {self.store.safe_url} has never staged a full extraction of {', '.join(unknown)}, "
                "but the tap extracted only changes since Meltano's bookmark (the store was deleted or replaced); "
                "nothing was written to either system. To recover, re-extract in full: clear this job's state "
                "(`meltano state list`, then `meltano state clear --force <state id>` for each) and run the job "
                "again",
                None,
            )

    def refuse_input(self, error: SingerInputError) -> None:
        """Stop on malformed Singer input with one line naming where it is wrong (docs/architecture.md §9.5).

        What earlier batches staged stays (each batch is one transaction, and its STATE was emitted only
        after it committed); the run is closed as failed so ``mktdyn report`` says why.
        """
        self.stop(str(error), error)

    def stop(self, reason: str, cause: BaseException | None) -> NoReturn:
        """End the run with one line on stderr (architecture §9.5), closing it as failed in the store if possible.

        The line is the exit message alone (no ERROR log line repeating it); a store that cannot record the
        failure (it is what failed) does not replace the reason with a second error.
        """
        if self._run_id is not None and self._store is not None:
            try:
                self._store.finish_run(self._run_id, "failed", error=reason)
            except StoreError:
                self.logger.debug("the failed run could not be closed in the store", exc_info=True)
            else:
                self.alert_failure(self._run_id, redact(reason))
        raise SystemExit(f"target-mktdyn-merge: {redact(reason)}") from cause

    def alert_failure(self, run_id: str, reason: str) -> None:
        """Tell ``alert_webhook_url`` that the run failed (never in the way of the exit: errors are logged)."""
        if self._settings is None or self._store is None or not self._settings.alerts.enabled:
            return
        from target_mktdyn_merge.sync.alerts import run_alerts, send_alerts
        from target_mktdyn_merge.sync.report_data import failure_reasons

        settings = self._settings.alerts
        try:
            reasons = failure_reasons(self._store, run_id)
            send_alerts(settings, run_alerts(self._store, settings, run_id, 0, reasons, reason), self.logger)
        except StoreError:
            self.logger.debug("the failed run's alert could not read the store", exc_info=True)

    def process_endofpipe(self) -> None:
        """Drain (commit, then STATE), then merge when this invocation is the merging one.

        Staging needs no lock (it is idempotent and each batch is one transaction); the merge and its
        writes hold the store's write lock, so two runs never write at once (docs/architecture.md §7).
        """
        try:
            super().process_endofpipe()
        except ValueError as exc:  # a record the last drain could not stage (its message names it)
            self.refuse_input(SingerInputError(None, str(exc)))
        run_id = self.run_id
        self.check_store_matches_bookmarks()
        if not self.settings.merge:
            self.store.finish_run(run_id, "succeeded", {"staged": self.store.staged_counts()})
            return
        from target_mktdyn_merge.sync.engine import run_merge

        try:
            with write_lock(
                self.store,
                wait=self.settings.lock_wait,
                timeout_seconds=self.settings.lock_timeout_seconds,
                logger=self.logger,
            ):
                run_merge(self.store, self.settings, run_id, self.logger)
        except (StoreLockedError, MktdynError) as exc:
            self.stop(str(exc), exc)


#: The console script (``[project.scripts]``): the SDK command line; a store, configuration or API error ends the
#: run with one line naming the setting or the API's code (docs/architecture.md §9.5), never a traceback.
main = plugin_main(TargetMktdynMerge)

if __name__ == "__main__":
    main()
