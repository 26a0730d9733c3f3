"""The store's tables and their migrations (SQLAlchemy Core, portable between SQLite and PostgreSQL).

Each migration is a function applied once, in order, recorded in ``schema_version``; a store created by
an older release is brought forward on connect, and one created by a newer release is refused rather
than misread.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(32), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),  # stage | merge | dry_run
    sa.Column("status", sa.String(16), nullable=False),  # running | succeeded | failed
    sa.Column("started_at", sa.String(32), nullable=False),
    # When its tap read, at the latest (migration 15; NULL before it: the start): the target's start, or the first
    # record's time_extracted if earlier. Confirmed writes and writer lookups compare with it; runs order by start.
    sa.Column("read_from", sa.String(32)),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("summary", sa.Text),  # JSON counts per action, set when the run ends
    sa.Column("error", sa.Text),
)

# One row per source record, the newest version by (source timestamp, arrival order).
staged = sa.Table(
    "staged",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),  # the stream name
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("email_norm", sa.Text, index=True),  # Text: a hostile 10 KB "email" must stage, not fail
    sa.Column("source_ts", sa.String(32), nullable=False),  # UTC ISO, comparable as text
    sa.Column("arrival", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.String(32)),
    sa.Column("fields", sa.Text, nullable=False),  # JSON of the fields the tap sent (absent = unknown)
    sa.Column("staged_run", sa.String(64), nullable=False),
    sa.Column("changed_seq", sa.BigInteger, nullable=False, index=True),  # moves only when content changed
    sa.Column("merged_seq", sa.BigInteger, nullable=False, server_default="0"),
    # The version of the last full extraction that returned this record (key reconciliation, docs/architecture.md §4).
    sa.Column("seen_version", sa.BigInteger),
)

# Matching looks records up by (stream, email). With only the two single-purpose indexes, SQLite prefers the
# primary key's ``source`` prefix and scans a whole stream per lookup (0.2 s per 500 emails at 100,000 rows).
staged_source_email = sa.Index("ix_staged_source_email", staged.c.source, staged.c.email_norm)

# What the merge has not seen yet (``changed_seq > merged_seq``) is a handful of rows in a quiet run, but without an
# index finding them scans the whole table: 0.56 s per query on a 34,000-row store, paid per stream and per count.
# A partial index holds only those rows, so the cost follows the change, not the store (0.0006 s, measured).
staged_dirty = sa.Index(
    "ix_staged_dirty",
    staged.c.source,
    staged.c.record_id,
    sqlite_where=staged.c.changed_seq > staged.c.merged_seq,
    postgresql_where=staged.c.changed_seq > staged.c.merged_seq,
)

# Every run reports how many records are staged, live and deleted. Counted from the table, that read the whole
# store (4.3 GB at a million persons: 22 s of the staging leg); counted from indexes, it reads the keys and the
# deleted rows only.
staged_deleted = sa.Index(
    "ix_staged_deleted",
    staged.c.source,
    sqlite_where=staged.c.deleted_at.is_not(None),
    postgresql_where=staged.c.deleted_at.is_not(None),
)

# A global counter for arrival order and change sequence numbers (portable: no sequences in SQLite).
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("pair_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("marketo_id", sa.String(64), nullable=False, unique=True),
    sa.Column("entity", sa.String(16), nullable=False),  # lead | contact
    sa.Column("dynamics_id", sa.String(64), nullable=False),
    sa.Column("authority", sa.String(16), nullable=False),  # marketo | dynamics
    sa.Column("linked_at", sa.String(32), nullable=False),
    sa.Column("linked_run", sa.String(64), nullable=False),
    sa.Column("first_merge_done", sa.Boolean, nullable=False, server_default=sa.false()),
    # The run that did the first merge (migration 14; NULL: not yet, or done before the column existed). The
    # mass-change guard counts only pairs whose first merge an earlier, finished run did.
    sa.Column("first_merged_run", sa.String(64)),
    # Linked by a real-time Sync Person to Microsoft request (migration 7): its first merge is on the create path.
    sa.Column("requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("baseline", sa.Text, nullable=False, server_default="{}"),  # JSON {field: {marketo, dynamics}}
    sa.Column("guard", sa.Text, nullable=False, server_default="{}"),  # JSON ping-pong guard per field
    sa.UniqueConstraint("entity", "dynamics_id", name="uq_pairs_dynamics"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("op_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("pair_id", sa.Integer),
    sa.Column("system", sa.String(16), nullable=False),  # marketo | dynamics
    sa.Column("action", sa.String(16), nullable=False),  # create | update | delete | flag | link | activity
    sa.Column("entity", sa.String(16)),
    sa.Column("target_id", sa.String(64)),
    sa.Column("idempotency_key", sa.String(200), index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False, server_default="{}"),  # what to record once confirmed
    sa.Column("status", sa.String(16), nullable=False, index=True),  # planned|sent|confirmed|failed|deferred|dry_run
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Column("next_attempt_at", sa.String(32)),
)

# A newer plan for a record retires the owed entries it replaces (``store.outbox.supersede``), looked up by
# target. Without this index SQLite answered from the status index, reading every owed entry per statement:
# quadratic in an initial sync, whose hundreds of thousands of planned writes made it minutes of planning.
outbox_target = sa.Index("ix_outbox_target", outbox.c.system, outbox.c.target_id)

activity_log = sa.Table(
    "activity_log",
    metadata,
    sa.Column("activity_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("person_id", sa.String(64), index=True),
    sa.Column("entity", sa.String(16)),
    sa.Column("dynamics_id", sa.String(64)),
    sa.Column("direction", sa.String(16)),  # to_dynamics | to_marketo | both | none
    sa.Column("action", sa.String(32), nullable=False, index=True),
    sa.Column("fields", sa.Text, nullable=False, server_default="[]"),  # JSON [{field, old, new}]
    sa.Column("winner", sa.String(16)),
    sa.Column("rule", sa.Text),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    sa.Column("posted_to_marketo", sa.Boolean, nullable=False, server_default=sa.false()),
    # What a dry run would have done, not what happened: never posted to Marketo, shown marked (migration 4).
    sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Planning asks, per batch, which of its persons a run planned a create for and found existing
# (``activity_log.creates_found_existing``: by person and action). With only the single-column indexes, SQLite
# answered from the action index, reading every ``skipped`` row of the log per batch: an initial sync's hundreds
# of thousands of them made it quadratic.
activity_person_action = sa.Index("ix_activity_log_person_action", activity_log.c.person_id, activity_log.c.action)

# The survivor of a delete that unlinked a pair: re-created on the other side only once it changes
# (Marketo's own sync brings a deleted person back when the CRM record is updated, not before).
tombstones = sa.Table(
    "tombstones",
    metadata,
    sa.Column("survivor_system", sa.String(16), primary_key=True),  # marketo | dynamics
    sa.Column("survivor_entity", sa.String(16), primary_key=True),  # person | lead | contact
    sa.Column("survivor_id", sa.String(64), primary_key=True),
    sa.Column("deleted_at", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),  # the survivor's mapped values when the pair ended
    sa.Column("run_id", sa.String(64), nullable=False),
)

# The properties each stream's current catalog selects, from the SCHEMA message of its last extraction: a staged
# field outside them is unknown to the merge, even in a record staged before the selection changed
# (docs/architecture.md §10).
stream_properties = sa.Table(
    "stream_properties",
    metadata,
    sa.Column("stream", sa.String(32), primary_key=True),
    sa.Column("property", sa.String(255), primary_key=True),
)

# A write the system confirmed, per record, until an extraction that started after it has staged the record
# (docs/architecture.md §10: no run writes from data older than what the store confirmed). A staged version of a record
# listed here may predate the write, so the merge re-reads the record before it compares.
confirmed_writes = sa.Table(
    "confirmed_writes",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),  # the stream of the written record
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("confirmed_at", sa.String(32), nullable=False),  # UTC ISO, comparable as text
)

# Requests of the real-time path (``mktdyn serve``, docs/architecture.md §10), durable before they are answered:
# a crash with requests queued loses none, the worker drains them in batches under the write lock.
realtime_requests = sa.Table(
    "realtime_requests",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # sync_person | full_sync
    sa.Column("person_id", sa.String(64), nullable=False, index=True),
    sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # queued | done | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("run_id", sa.String(64)),  # the run that processed it
    sa.Column("result", sa.Text),  # JSON: the answer given (or that would have been given) to the caller
)

# The systems' metadata answers (describe, column metadata), kept between runs for ``metadata_max_age_minutes``
# (store/metadata_answers.py): a quiet run does not ask both systems for the same field metadata every time.
metadata_answers = sa.Table(
    "metadata_answers",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # SHA-256 of the request (URLs can be long)
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("fetched_at", sa.String(32), nullable=False),  # UTC ISO, comparable as text
    sa.Column("body", sa.Text, nullable=False),  # the JSON answer
)

# What one planning pass has done so far, by run (store/run_marks.py): the persons it decided on and the emails
# it planned a person's create for. Kept here, not in Python sets, so the planner's memory stays flat in the
# number of persons; a pass deletes its rows when it ends (a crashed one's are deleted by the next pass).
run_marks = sa.Table(
    "run_marks",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # person | create_email
    sa.Column("mark", sa.String(320), primary_key=True),  # a person id, or a normalized email
)

Migration = Callable[[sa.Connection], None]


def _initial(connection: sa.Connection) -> None:
    """Version 1: every table of this module."""
    metadata.create_all(connection, tables=[runs, staged, counters, pairs, outbox, activity_log])


def _tombstones(connection: sa.Connection) -> None:
    """Version 2: tombstones of deletes, so the survivor is not re-created until it changes."""
    metadata.create_all(connection, tables=[tombstones])


def _staged_source_email(connection: sa.Connection) -> None:
    """Version 3: the (stream, email) index matching reads (a store created at version 1 lacks it)."""
    staged_source_email.create(connection, checkfirst=True)


def _activity_dry_run(connection: sa.Connection) -> None:
    """Version 4: ``activity_log.dry_run``, so a dry run's outcomes are never taken for real ones.

    A store created at version 1 has the table without the column; rows of existing dry runs are marked from
    their run's mode.
    """
    columns = {column["name"] for column in sa.inspect(connection).get_columns("activity_log")}
    if "dry_run" not in columns:
        connection.execute(
            sa.text("ALTER TABLE activity_log ADD COLUMN dry_run BOOLEAN NOT NULL DEFAULT " + _false(connection))
        )
    dry_runs = sa.select(runs.c.run_id).where(runs.c.mode == "dry_run").scalar_subquery()
    connection.execute(sa.update(activity_log).where(activity_log.c.run_id.in_(dry_runs)).values(dry_run=True))


def _false(connection: sa.Connection) -> str:
    """The dialect's literal false for a column default (SQLite has no boolean literal before 3.23)."""
    return "0" if connection.dialect.name == "sqlite" else "false"


def _stream_properties(connection: sa.Connection) -> None:
    """Version 5: the properties each stream's catalog selects (a deselected field is unknown at once)."""
    metadata.create_all(connection, tables=[stream_properties])


def _confirmed_writes(connection: sa.Connection) -> None:
    """Version 6: confirmed writes not yet seen by an extraction (overlapping runs never revert an edit)."""
    metadata.create_all(connection, tables=[confirmed_writes])


def _realtime_requests(connection: sa.Connection) -> None:
    """Version 7: the real-time path's durable request queue (``mktdyn serve``), and ``pairs.requested``.

    A store created at version 1 has ``pairs`` without the column (a new store has it from its first table).
    """
    metadata.create_all(connection, tables=[realtime_requests])
    columns = {column["name"] for column in sa.inspect(connection).get_columns("pairs")}
    if "requested" not in columns:
        connection.execute(
            sa.text("ALTER TABLE pairs ADD COLUMN requested BOOLEAN NOT NULL DEFAULT " + _false(connection))
        )


def _metadata_answers(connection: sa.Connection) -> None:
    """Version 8: the systems' metadata answers kept between runs (one quiet run no longer asks for them)."""
    metadata.create_all(connection, tables=[metadata_answers])


def _run_marks(connection: sa.Connection) -> None:
    """Version 9: what a planning pass has done so far lives in the store (flat memory in persons)."""
    metadata.create_all(connection, tables=[run_marks])


def _staged_dirty(connection: sa.Connection) -> None:
    """Version 10: the partial index of staged rows the merge has not seen, so a quiet run reads no whole table."""
    staged_dirty.create(connection, checkfirst=True)


def _staged_deleted(connection: sa.Connection) -> None:
    """Version 11: the partial index of deleted staged rows, so counting the store reads no whole table."""
    staged_deleted.create(connection, checkfirst=True)


def _outbox_target(connection: sa.Connection) -> None:
    """Version 12: owed entries by target, so superseding them reads what it replaces, not every owed entry."""
    outbox_target.create(connection, checkfirst=True)


def _activity_person_action(connection: sa.Connection) -> None:
    """Version 13: the log by person and action, so a planning batch reads its persons' rows, not every skip."""
    activity_person_action.create(connection, checkfirst=True)


def _pair_first_merged_run(connection: sa.Connection) -> None:
    """Version 14: which run did a pair's first merge, so a first merge is never counted as a mass change.

    A pair linked by a run that found it only at write time (a create Marketo refused as a duplicate, after an
    export cut short) gets its first merge in the next run; counted as "established" it made that run's first
    merges look like a mass change. Pairs first merged before this version keep NULL: established as before.
    """
    columns = {column["name"] for column in sa.inspect(connection).get_columns("pairs")}
    if "first_merged_run" not in columns:
        connection.execute(sa.text("ALTER TABLE pairs ADD COLUMN first_merged_run VARCHAR(64)"))


def _run_read_from(connection: sa.Connection) -> None:
    """Version 15: when a run's tap read, apart from when the run started (a target fed a file read earlier).

    Runs keep their start for ordering and timing; what an extraction has seen is compared with ``read_from``.
    Runs from before this version keep NULL, read as their start.
    """
    columns = {column["name"] for column in sa.inspect(connection).get_columns("runs")}
    if "read_from" not in columns:
        connection.execute(sa.text("ALTER TABLE runs ADD COLUMN read_from VARCHAR(32)"))


#: Migrations in order; version N is MIGRATIONS[N - 1]. Append, never edit a released one.
MIGRATIONS: list[Migration] = [
    _initial,
    _tombstones,
    _staged_source_email,
    _activity_dry_run,
    _stream_properties,
    _confirmed_writes,
    _realtime_requests,
    _metadata_answers,
    _run_marks,
    _staged_dirty,
    _staged_deleted,
    _outbox_target,
    _activity_person_action,
    _pair_first_merged_run,
    _run_read_from,
]
LATEST_VERSION = len(MIGRATIONS)
