"""``mktdyn serve`` and ``mktdyn sync --person``: the real-time path's commands (docs/architecture.md §10).

They read the target's settings and the store as every ``mktdyn`` command does (``cli._config``, ``cli._store``);
``sync --person`` takes the store's write lock as ``unlink`` and ``resync`` do.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from target_mktdyn_merge.core.vocabulary import RequestKind
from target_mktdyn_merge.ops.cli import _config, _store, _write_lock

_LOG = logging.getLogger("mktdyn")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the Marketo webhook (the real-time path) until SIGTERM/SIGINT."""
    from target_mktdyn_merge.ops.serve import serve
    from target_mktdyn_merge.ops.serve_settings import ServeSettings

    settings = ServeSettings.from_config(_config(args))
    store = _store(args)
    sys.stderr.write(f"mktdyn serve: store {store.safe_url}, listening on http://{args.host}:{args.port}\n")
    serve(store, settings, args.host, args.port)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Sync one person now, by the batch's rules, and print the answer as JSON (exit 1 unless it is a 2xx)."""
    from target_mktdyn_merge.ops.realtime_worker import Clients, run_once
    from target_mktdyn_merge.plugin.settings import merge_settings

    settings = merge_settings(_config(args))
    store = _store(args)
    kind: RequestKind = "sync_person" if args.create_only else "full_sync"
    clients = Clients(settings)
    try:
        with _write_lock(store, args):
            found = run_once(
                store, clients.sync(store, _LOG), kind, [str(args.person)], args.dry_run or settings.dry_run
            )
    finally:
        clients.close()
    answer = found[str(args.person)]
    sys.stdout.write(json.dumps(answer.to_json(), ensure_ascii=False) + "\n")
    return 0 if answer.http_status < 300 else 1


def add_realtime_commands(commands: Any) -> None:
    """``serve`` and ``sync --person`` (the real-time path, docs/architecture.md §10)."""
    config_help = (
        "the target's config JSON (default: under Meltano, the target's resolved configuration; otherwise the "
        "MKTDYN_* environment variables)"
    )
    serve = commands.add_parser("serve", help="serve the Marketo webhook (Sync Person to Microsoft in real time)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, behind a proxy)")
    serve.add_argument("--port", type=int, default=8787, help="port to listen on (default: 8787)")
    serve.add_argument("--config", help=config_help)
    serve.set_defaults(func=cmd_serve)
    sync = commands.add_parser("sync", help="sync one person now: a two-way merge by the batch's rules")
    sync.add_argument("--person", required=True, help="Marketo person id")
    sync.add_argument("--dry-run", action="store_true", help="decide and log, write nothing to either system")
    sync.add_argument(
        "--create-only",
        action="store_true",
        help="what the webhook does instead: create a missing lead, otherwise only link (Sync Person to Microsoft)",
    )
    sync.add_argument("--wait", type=float, default=60, help="seconds to wait for a running sync (default: 60)")
    sync.add_argument("--config", help=config_help)
    sync.set_defaults(func=cmd_sync)
