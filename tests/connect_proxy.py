"""A minimal HTTP CONNECT proxy for tests: counts the tunnels it opens and logs every byte it sees in clear.

Why not the PyPI package ``proxy.py``: it is not in ``uv.lock``, which this change may not edit. This is the
part of a forward proxy the plugins use for HTTPS (RFC 9110 §9.3.6): read the ``CONNECT host:port`` head,
dial the target, answer ``200``, then copy bytes both ways. Anything but CONNECT is logged and refused with
405, so a client that sends a request in clear (and would show its secrets to the proxy) fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    """A running proxy: ``url`` to configure, ``tunnels`` (one ``host:port`` per CONNECT), ``log`` (clear text)."""

    url: str = ""
    tunnels: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _serve(proxy: ConnectProxy, ready: threading.Event, stop: asyncio.Event) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        proxy.log.append(head)
        method, target, _version = head.split("\r\n", 1)[0].split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, _, port = target.rpartition(":")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        proxy.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    ready.set()
    async with server:
        await stop.wait()


@contextlib.contextmanager
def connect_proxy() -> Iterator[ConnectProxy]:
    """Run a :class:`ConnectProxy` on a loopback port in a background thread for the ``with`` block."""
    proxy = ConnectProxy()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(proxy, ready, stop),), daemon=True)
    thread.start()
    assert ready.wait(10), "the proxy did not start"
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
