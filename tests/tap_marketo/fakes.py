"""A scripted HTTP edge for client unit tests: a requests adapter answering from handler functions.

It sits exactly where the network would (the session's transport adapter), so the client's own
code (token handling, retries, parsing) runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.transport import RetryPolicy

BASE = "https://123-ABC-456.mktorest.com"


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]] | BaseException
Handler = Callable[[Seen], Reply]


def envelope(result: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"requestId": "a1#b2", "success": True, **extra}
    if result is not None:
        body["result"] = result
    return body


def failure(code: str, message: str = "failed") -> dict[str, Any]:
    return {"requestId": "a1#b2", "success": False, "errors": [{"code": code, "message": message}]}


def token_reply(seen: Seen) -> Reply:
    return 200, {"access_token": "tok-1:ab", "token_type": "bearer", "expires_in": 3599, "scope": "api@x"}


@dataclass
class ScriptedAdapter(BaseAdapter):
    """Routes (method, path) to a handler or a queue of replies; records every request."""

    routes: dict[tuple[str, str], Handler | list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.routes.setdefault(("POST", "/identity/oauth/token"), token_reply)

    def on(self, method: str, path: str, handler: Handler | list[Reply]) -> None:
        self.routes[(method, path)] = handler

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(request.url or "")
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        seen = Seen(request.method or "", url.path, parse_qs(url.query), dict(request.headers), body)
        self.seen.append(seen)
        route = self.routes.get((seen.method, seen.path))
        if route is None:
            reply: Reply = (404, "no route")
        elif isinstance(route, list):
            reply = route.pop(0) if len(route) > 1 else route[0]
        else:
            reply = route(seen)
        if isinstance(reply, BaseException):
            raise reply
        status, payload, *rest = reply
        headers = rest[0] if rest else {}
        response = requests.Response()
        response.status_code = status
        response.url = request.url or ""
        response.request = request
        if isinstance(payload, bytes):
            content = payload
            response.headers["Content-Type"] = "text/csv"
        elif isinstance(payload, str):
            content = payload.encode()
            response.headers["Content-Type"] = "text/plain"
        else:
            content = json.dumps(payload).encode()
            response.headers["Content-Type"] = "application/json;charset=UTF-8"
        response.headers.update(headers)
        import io

        response.raw = io.BytesIO(content)
        return response

    def close(self) -> None:
        pass

    def calls_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def make_client(adapter: ScriptedAdapter, sleeps: list[float] | None = None, **connection: Any) -> MarketoClient:
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", adapter)
    settings: dict[str, Any] = {"base_url": BASE, "client_id": "cid", "client_secret": "s3cret-value"}
    settings.update(connection)
    recorded = sleeps if sleeps is not None else []
    return MarketoClient(
        MarketoConnection.from_config(settings), retry=RetryPolicy(), session=session, sleep=recorded.append
    )
