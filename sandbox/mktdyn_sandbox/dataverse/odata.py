"""URLs and JSON answers of the Web API: the absolute links clients follow verbatim."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from mktdyn_sandbox.dataverse.errors import ODATA_JSON, odata_headers
from mktdyn_sandbox.web import Request, Response

API_PATH = "/api/data/v9.2"


def host_base(request: Request) -> str:
    """``https://host:port`` as the client addressed us (links must work from the client's side)."""
    host = request.header("Host")
    return f"https://{host}" if host else request.base_url


def api_base(request: Request) -> str:
    """The absolute Web API root, ``https://host:port/api/data/v9.2``."""
    return host_base(request) + API_PATH


def odata_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the OData headers Dataverse sends."""
    return Response.json(payload, status=status, headers=odata_headers(headers), content_type=ODATA_JSON)


def no_content(headers: dict[str, str] | None = None) -> Response:
    """A 204 with the OData headers."""
    return Response(204, b"", odata_headers(headers))


def entity_link(request: Request, entity_set: str, key: str) -> str:
    """``https://host/api/data/v9.2/leads(<key>)`` for OData-EntityId and Location."""
    return f"{api_base(request)}/{entity_set}({key})"


def link(request: Request, path: str, replace: dict[str, str], keep: tuple[str, ...] | None = None) -> str:
    """An absolute link to ``path`` with the request's query options, some replaced (nextLink, deltaLink).

    ``keep`` limits the carried-over options (a deltaLink keeps only ``$select``).
    """
    pairs: list[tuple[str, str]] = []
    for name, values in request.query.items():
        if name in replace or name in ("$skiptoken", "$deltatoken") or (keep is not None and name not in keep):
            continue
        pairs += [(name, value) for value in values]
    pairs += list(replace.items())
    query = urlencode(pairs, quote_via=quote, safe="$,()'=:@/*")
    return f"{api_base(request)}/{path}" + (f"?{query}" if query else "")
