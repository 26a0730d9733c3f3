"""``mktdyn``: read and steer the store (report, activity log, status, unlink, resync, db upgrade, check).

Every command but ``db upgrade`` opens the store through :func:`_store`, which never creates or migrates one
(:func:`~target_mktdyn_merge.store.database.open_existing`): a mistyped URL is an error naming it, and an older schema
names ``mktdyn db upgrade``. The store URL is resolved as the run resolves it (:func:`_store_url`). Errors are one
line on stderr with exit 1; output to a closed pipe (``mktdyn report | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from mktdyn_common.errors import MktdynError
from mktdyn_common.redact import redact

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.baseline import clear_field
from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.ops.project_config import config_source, resolved_store_url, store_url
from target_mktdyn_merge.ops.views import add_view_commands
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.activity_log import record_activities
from target_mktdyn_merge.store.database import Store, open_existing
from target_mktdyn_merge.store.lock import StoreLockedError, write_lock
from target_mktdyn_merge.store.pairs import all_pairs, delete_pair, mark_pair_dirty, pairs_by_person, save_pairs
from target_mktdyn_merge.store.runs import new_run_id


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The target's effective settings (read once per command; under Meltano this asks Meltano)."""
    from target_mktdyn_merge.ops.check import load_config

    cached: dict[str, Any] | None = getattr(args, "resolved_config", None)
    if cached is None:
        cached = load_config(getattr(args, "config", None))
        if args.store_url:
            cached["store_url"] = args.store_url
        args.resolved_config = cached
    return cached


def _store_url(args: argparse.Namespace) -> str:
    """``--store-url``, else the ``store_url`` the run uses (same precedence as ``check``), else the default."""
    if args.store_url:
        return str(args.store_url)
    config: dict[str, Any] | None = getattr(args, "resolved_config", None)
    return store_url(config) if config is not None else resolved_store_url(os.environ)


def _store(args: argparse.Namespace) -> Store:
    """The store to read (or steer): it must exist at the current schema; nothing is created or migrated."""
    return open_existing(_store_url(args))


@contextmanager
def _write_lock(store: Store, args: argparse.Namespace) -> Iterator[None]:
    """The store's write lock, the one the merge holds (a change made during a write-back would be undone by it).

    ``--wait SECONDS`` waits that long for a running merge; the default (0) refuses at once. Either way a
    refusal is one line and nothing is changed.
    """
    wait = float(args.wait or 0)
    try:
        with write_lock(store, wait=wait > 0, timeout_seconds=wait):
            yield
    except StoreLockedError as exc:
        raise MktdynError(
            f"a sync run holds the write lock of the store at {store.safe_url}; nothing was changed; run this "
            f"again when it has finished, or pass --wait SECONDS (waited {wait:g} s)"
        ) from exc


def cmd_unlink(args: argparse.Namespace) -> int:
    """Forget the link of one person (the next run matches it again, by email)."""
    store = _store(args)
    with _write_lock(store, args), store.transaction() as connection:
        pair = pairs_by_person(connection, [str(args.person)]).get(str(args.person))
        if pair is None:
            raise MktdynError(f"person {args.person} is not linked")
        delete_pair(connection, pair)
        mark_pair_dirty(connection, pair)
        run_id = f"{new_run_id()}-unlink"
        connection.execute(
            sa.insert(tables.runs).values(
                run_id=run_id, mode="manual", status="succeeded", started_at=now_iso(), finished_at=now_iso()
            )
        )
        record_activities(
            store,
            run_id,
            [
                Activity(
                    "unlinked",
                    str(args.person),
                    pair.entity,
                    pair.dynamics_id,
                    "none",
                    rule="manual unlink (mktdyn unlink)",
                )
            ],
            connection,
        )
    sys.stdout.write(f"person {args.person} unlinked from {pair.entity} {pair.dynamics_id}\n")
    return 0


def _mapped_field(args: argparse.Namespace, field: str) -> None:
    """Refuse a field the run's field map does not map (a typo would otherwise change nothing, silently)."""
    from target_mktdyn_merge.plugin.settings import merge_settings

    mapped = merge_settings(_config(args)).field_map.marketo_fields()
    if field not in mapped:
        raise MktdynError(
            f"field {field!r} is not a Marketo field of the field map (setting field_map; mapped: "
            f"{', '.join(sorted(mapped)[:8])}{', ...' if len(mapped) > 8 else ''})"
        )


def cmd_resync(args: argparse.Namespace) -> int:
    """Forget the baseline (and ping-pong guard) of a field so the next run compares it afresh."""
    _mapped_field(args, args.field)
    store = _store(args)
    with _write_lock(store, args), store.transaction() as connection:
        if args.person:
            selected = list(pairs_by_person(connection, [str(args.person)]).values())
            if not selected:
                raise MktdynError(f"person {args.person} is not linked")
        else:
            selected = all_pairs(connection)
        changed = [pair for pair in selected if args.field in pair.baseline or args.field in pair.guards]
        for pair in changed:
            pair.baseline, pair.guards = clear_field(pair.baseline, pair.guards, args.field)
            mark_pair_dirty(connection, pair)
        save_pairs(connection, changed)
    sys.stdout.write(f"baseline of {args.field!r} forgotten on {len(changed)} pair(s); the next sync re-merges them\n")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create the store or bring its schema to this release's (the one command that may)."""
    url = _store_url(args)
    store = Store(url)
    try:
        with store.transaction() as connection:
            exists = sa.inspect(connection).has_table(tables.schema_version.name)
            before = (
                connection.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar() if exists else None
            )
        after = store.migrate()
    finally:
        store.close()
    if before is None:
        sys.stdout.write(f"created the store at {store.safe_url} (schema version {after})\n")
    elif before == after:
        sys.stdout.write(f"the store at {store.safe_url} is already at schema version {after}\n")
    else:
        sys.stdout.write(f"upgraded the store at {store.safe_url} from schema version {before} to {after}\n")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Preflight the settings against both live APIs."""
    from target_mktdyn_merge.ops.check import run_check

    sys.stdout.write(f"Configuration: {config_source(args.config)}\n")
    failures = run_check(_config(args), sys.stdout)
    sys.stdout.write("\nAll checks passed.\n" if not failures else f"\n{failures} check(s) failed.\n")
    return 0 if not failures else 1


def cmd_verify(args: argparse.Namespace) -> int:
    """Read both systems for the linked pairs; exit 1 on a disagreement nothing in the store explains."""
    from target_mktdyn_merge.ops.verify import run_verify
    from target_mktdyn_merge.ops.verify_output import render_jsonl, render_text

    config = _config(args)
    store = _store(args)
    result = run_verify(config, store, sample=args.sample, person=args.person, seed=args.seed)
    (render_jsonl if args.format == "jsonl" else render_text)(result, sys.stdout)
    return 1 if result.drift else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mktdyn`` command line."""
    parser = argparse.ArgumentParser(
        prog="mktdyn",
        description="Read and steer the mktdyn store (report, activity log, status, unlink, resync), upgrade its "
        "schema (db upgrade), and preflight the target's settings (check). Only `db upgrade` creates or migrates "
        "a store.",
    )
    parser.add_argument(
        "--store-url",
        help="store URL (default: the target's store_url as the run resolves it: under Meltano its configuration, "
        "otherwise $TARGET_MKTDYN_MERGE_STORE_URL or $MKTDYN_STORE_URL; else .mktdyn/store.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_view_commands(commands, _store)
    unlink = commands.add_parser("unlink", help="forget a person's link")
    unlink.add_argument("person", help="Marketo person id")
    unlink.add_argument("--wait", type=float, default=0, help="seconds to wait for a running sync (default: 0)")
    unlink.set_defaults(func=cmd_unlink)
    resync = commands.add_parser("resync", help="forget a field's baseline so the next run re-merges it")
    resync.add_argument("--field", required=True, help="Marketo field name of the mapping")
    resync.add_argument("--person", help="only this Marketo person")
    resync.add_argument("--wait", type=float, default=0, help="seconds to wait for a running sync (default: 0)")
    resync.set_defaults(func=cmd_resync)
    check = commands.add_parser("check", help="preflight: settings, store, both APIs, field map, policies")
    check.add_argument(
        "--config",
        help="the target's config JSON (default: under Meltano, the target's resolved configuration; "
        "otherwise the MKTDYN_* environment variables)",
    )
    check.set_defaults(func=cmd_check)
    db = commands.add_parser("db", help="the store's schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create the store or upgrade its schema to this release's")
    upgrade.set_defaults(func=cmd_db_upgrade)
    verify = commands.add_parser("verify", help="read both systems for the linked pairs; exit 1 on unexplained drift")
    which = verify.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every linked pair (the default)")
    which.add_argument("--sample", type=int, metavar="N", help="a random sample of N pairs")
    which.add_argument("--person", help="only this Marketo person's pair")
    verify.add_argument("--seed", type=int, help="seed of --sample's random choice (repeatable samples)")
    verify.add_argument("--format", choices=["text", "jsonl"], default="text")
    verify.add_argument(
        "--config",
        help="the target's config JSON (default: under Meltano, the target's resolved configuration; "
        "otherwise the MKTDYN_* environment variables)",
    )
    verify.set_defaults(func=cmd_verify)
    from target_mktdyn_merge.ops.realtime_cli import add_realtime_commands

    add_realtime_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mktdyn`` console script; errors become one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return 0  # the reader has what it wanted (`mktdyn report | head -1`)
    except MktdynError as exc:
        lines = [line.strip() for line in redact(str(exc)).splitlines() if line.strip()]
        sys.stderr.write(f"mktdyn: {' '.join(lines)}\n")
        return 1
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout to redirect
        pass


if __name__ == "__main__":
    sys.exit(main())
