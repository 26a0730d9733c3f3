"""`make demo`: start the local sandbox of both APIs and show it serving (the full sync lands with the job)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start `mktdyn-sandbox serve` and wait for sandbox.json."""
    process = subprocess.Popen(
        [
            str(BIN / "mktdyn-sandbox"),
            "serve",
            "--dir",
            str(directory),
            "--persons",
            "500",
            "--dynamics-only",
            "100",
            "--export-delay",
            "0.2",
        ],
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (directory / "sandbox.json").exists():
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the sandbox did not start within 120 s")
        time.sleep(0.2)
    return process, json.loads((directory / "sandbox.json").read_text())


def main() -> int:
    """Run the demo; exit non-zero if any step fails."""
    with tempfile.TemporaryDirectory(prefix="mktdyn-demo-") as tmp:
        directory = Path(tmp) / "sandbox"
        process, info = start_sandbox(directory)
        try:
            session = requests.Session()
            session.trust_env = False
            session.verify = info["ca_bundle"]
            print(f"Marketo sandbox:  {info['marketo_url']}")
            print(f"Dynamics sandbox: {info['dynamics_url']}")
            for name, url in (("marketo", info["marketo_url"]), ("dynamics", info["dynamics_url"])):
                health = session.get(f"{url}/_sandbox/health", timeout=30)
                health.raise_for_status()
                print(f"  {name}: serving over TLS ({health.json()})")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    print("demo finished: sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
