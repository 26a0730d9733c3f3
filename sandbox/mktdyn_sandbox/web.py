"""A small threaded HTTPS framework for the sandbox servers.

The stdlib server keeps the sandbox free of web-framework dependencies and lets it start in-process
for tests. It speaks HTTP/1.1 with keep-alive (clients reuse connections as they do against the real
APIs), does the TLS handshake in the worker thread (a slow client never blocks ``accept``), and can
drop a connection without an answer to simulate a reset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json;charset=UTF-8"


class RequestError(Exception):
    """Raised by handlers to answer with a ready-made response (an API error body)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class Request:
    """One HTTP request as the handlers see it (the query string and form body already parsed)."""

    method: str
    target: str
    headers: Message
    body: bytes = b""
    base_url: str = ""
    path: str = field(init=False)
    raw_query: str = field(init=False)
    query: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = unquote(parts.path)
        self.raw_query = parts.query
        # '+' means space in a form-encoded query (requests' params=), '%24' is '$': both decoded.
        self.query = parse_qs(parts.query, keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitively."""
        value = self.headers.get(name)
        return default if value is None else str(value)

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case, without parameters."""
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded`` (empty for other types)."""
        if self.content_type != "application/x-www-form-urlencoded" or not self.body:
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError on malformed input."""
        return json.loads(self.body.decode("utf-8"))

    def param(self, name: str, default: str | None = None) -> str | None:
        """First value of a query (or form) parameter."""
        values = self.query.get(name) or self.form().get(name)
        return values[0] if values else default

    def params(self, name: str) -> list[str]:
        """All values of a list parameter, accepting both ``a,b`` and repeated ``x=a&x=b`` forms."""
        values = self.query.get(name) or self.form().get(name) or []
        return [item.strip() for value in values for item in value.split(",") if item.strip()]


@dataclass
class Response:
    """An HTTP response; ``file`` streams a byte range of a file instead of ``body``."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    file_range: tuple[int, int] | None = None
    reset: bool = False

    @classmethod
    def json(
        cls,
        payload: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = JSON_TYPE,
    ) -> Response:
        """A JSON response (compact, UTF-8, non-ASCII kept as is)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain;charset=UTF-8") -> Response:
        """A plain-text response."""
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})

    @classmethod
    def connection_reset(cls) -> Response:
        """Drop the connection without answering (an injected ``reset`` fault)."""
        return cls(reset=True)


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """A handler bound to a method and a path pattern, with a stable name for the counters."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str
    kind: str


class Router:
    """Routes by method and full-match regex; named groups become handler keyword arguments."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, name: str | None = None, kind: str = "read") -> None:
        """Register ``handler`` for ``method`` on paths fully matching ``pattern``."""
        self._routes.append(Route(method.upper(), re.compile(pattern), handler, name or pattern, kind))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route for a request, its path arguments, and whether the path exists for another method."""
        path_known = False
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, {k: v for k, v in found.groupdict().items() if v is not None}, True
        return None, {}, path_known

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)


class Application(Protocol):
    """What a server needs from an app: one entry point from request to response."""

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        ...


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms per call on keep-alive connections).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(30)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        request = Request(self.command, self.path, self.headers, body, self.server.base_url)
        try:
            response = self.server.app.handle(request)
        except RequestError as exc:
            response = exc.response
        except Exception:
            logger.exception("sandbox handler failed for %s %s", self.command, request.path)
            response = Response.json({"error": "internal sandbox error"}, status=500)
        if response.reset:
            self._reset()
            return
        self._send(response)

    def _reset(self) -> None:
        self.close_connection = True
        try:
            raw: socket.socket = self.connection
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except OSError:
            pass

    def _send(self, response: Response) -> None:
        headers = dict(response.headers)
        length = len(response.body)
        if response.file is not None:
            start, end = response.file_range or (0, response.file.stat().st_size - 1)
            length = max(0, end - start + 1)
        self.send_response(
            response.status,
            HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else "",
        )
        for name, value in headers.items():
            self.send_header(name, value)
        if response.status not in (204, 304):
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD" or response.status in (204, 304):
            return
        if response.file is not None:
            start, _ = response.file_range or (0, 0)
            with response.file.open("rb") as handle:
                handle.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = handle.read(min(1 << 16, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _dispatch  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Application, tls: ssl.SSLContext | None) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https" if tls is not None else "http"
        self.tls = tls is not None
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        self.base_url = f"{scheme}://{host_text}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember each open connection, so stopping can drop keep-alive ones as a real restart does."""
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection once it is closed."""
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Break every open connection (its handler thread then ends instead of serving a stopped app)."""
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed connection (a refused TLS handshake, a client gone) quietly instead of to stderr."""
        logger.debug("connection from %s failed", client_address, exc_info=True)


class HttpServer:
    """One listening server running in a background thread."""

    def __init__(
        self, app: Application, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = _Server((host, port), app, tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"sandbox-{self.port}", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return self._server.base_url

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and drop open connections (keep-alive ones included)."""
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(timeout=5)


def json_body(request: Request, error: Callable[[str], Response]) -> Any:
    """Parse a JSON body or raise RequestError with the app's own error shape."""
    try:
        return request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(error(f"malformed JSON body: {exc}")) from exc


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Yield lists of at most ``size`` items (bounded memory for large seeds)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
