"""A real HTTP receiver for alert webhooks: ``http.server`` on loopback in a thread, keeping every POST body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects the JSON bodies POSTed to it (``url``), as Slack's incoming webhook would receive them."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.raw.append(data)
                received.bodies.append(json.loads(data))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/XXXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kinds(self) -> list[str]:
        """The ``mktdyn.kind`` of each alert received, in order."""
        return [body["mktdyn"]["kind"] for body in self.bodies]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
