"""``mktdyn-sandbox``: serve the sandbox, or print the environment a Meltano project needs to use it."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from mktdyn_sandbox.faults import FaultSpecError, parse_spec
from mktdyn_sandbox.plugin_config import ENV_VARIABLES, start_date
from mktdyn_sandbox.sandbox import SANDBOX_JSON, Sandbox, SandboxOptions, read_info


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _fault_spec(text: str) -> str:
    try:
        parse_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of docs/architecture.md §9.2."""
    parser = argparse.ArgumentParser(prog="mktdyn-sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start both API servers and serve until SIGTERM/SIGINT")
    serve.add_argument("--dir", required=True, type=Path, help="where data, TLS material and sandbox.json live")
    serve.add_argument("--persons", type=int, default=1000, help="Marketo persons to seed (first start only)")
    serve.add_argument("--dynamics-only", type=int, default=200, help="Dynamics rows with no Marketo person")
    serve.add_argument("--overlap", type=_probability, default=0.6, help="share of persons also in Dynamics")
    serve.add_argument("--seed", type=int, default=1, help="seed of the data and of the fault draws")
    serve.add_argument("--faults", type=_fault_spec, default="", help="fault SPEC, e.g. marketo.606=0.05,reset=0.01")
    serve.add_argument("--no-limits", action="store_true", help="turn off rate limits and quotas")
    serve.add_argument("--export-delay", type=float, default=1.0, help="seconds per bulk export status step")
    serve.add_argument("--marketo-port", type=int, default=0, help="Marketo port (default: a free one)")
    serve.add_argument("--dynamics-port", type=int, default=0, help="Dataverse and authority port (default: free)")
    serve.add_argument("--log-level", default="WARNING", help="Python log level of the servers")
    env = commands.add_parser("env", help="print export lines for meltano.yml's sandbox environment")
    env.add_argument("dir", type=Path, help="the --dir of a running sandbox")
    env.add_argument("--wait", type=float, default=0.0, help="seconds to wait for sandbox.json to appear")
    return parser


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sandbox = Sandbox(
        SandboxOptions(
            directory=args.dir,
            persons=args.persons,
            dynamics_only=args.dynamics_only,
            overlap=args.overlap,
            seed=args.seed,
            faults=args.faults,
            limits=not args.no_limits,
            export_delay=args.export_delay,
            marketo_port=args.marketo_port,
            dynamics_port=args.dynamics_port,
        )
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    info = sandbox.start()
    print(
        f"mktdyn sandbox: Marketo {info['marketo_url']}  Dynamics {info['dynamics_url']}  ({args.dir / SANDBOX_JSON})",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


def _env(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait
    while not (args.dir / SANDBOX_JSON).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        info = read_info(args.dir)
    except FileNotFoundError:
        print(f"mktdyn-sandbox env: no {SANDBOX_JSON} in {args.dir} (is the sandbox running?)", file=sys.stderr)
        return 1
    for variable, key in ENV_VARIABLES.items():
        print(f"export {variable}={shlex.quote(str(info[key]))}")
    print(f"export MKTDYN_START_DATE={start_date()}")  # the seed spans the 62 days before the first start
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mktdyn-sandbox`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _env(args)


if __name__ == "__main__":
    sys.exit(main())
