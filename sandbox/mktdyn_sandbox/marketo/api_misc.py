"""Usage statistics, static lists, campaigns and asset programs: the endpoints clients touch on the side.

Campaigns and programs are a small fixed catalogue (the sandbox does not run campaigns); they exist so
clients that page through them, or use ``programs.json`` as a connection check, see real shapes,
including the asset API's "No assets found" warning past the end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mktdyn_sandbox.clock import SandboxClock
from mktdyn_sandbox.marketo.envelope import asset_ok, fail, ok
from mktdyn_sandbox.marketo.limits import CallLimits, quota_day
from mktdyn_sandbox.marketo.params import batch_size, decode_position, encode_position
from mktdyn_sandbox.marketo.store import PersonStore, iso_from_ts
from mktdyn_sandbox.web import Request, Response

NO_ASSETS = "No assets found for the given search criteria."
MAX_ASSET_BATCH = 200

PROGRAMS: tuple[tuple[int, str, str, str], ...] = (
    (1001, "Dynamics Sync Pilot", "program", "Operational"),
    (1002, "Spring Webinar", "event", "Webinar"),
    (1003, "Newsletter", "email", "Email Blast"),
)
CAMPAIGNS: tuple[tuple[int, str, str, int], ...] = (
    (2001, "Sync Person to Microsoft", "trigger", 1001),
    (2002, "Webinar Invite", "batch", 1002),
    (2003, "Monthly Newsletter", "batch", 1003),
)


class MiscApi:
    """stats/usage, stats/errors, lists.json, campaigns.json, asset programs.json."""

    def __init__(self, store: PersonStore, limits: CallLimits, clock: SandboxClock, created_ts: float) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock
        self.created_ts = created_ts

    def _days(self, count: int) -> list[str]:
        now = self.clock.time()
        return [quota_day(now - 86400 * back) for back in range(count)]

    def usage(self, request: Request) -> Response:
        """Today's calls."""
        return ok(self.clock.time(), self.limits.usage(self._days(1)))

    def usage_7_days(self, request: Request) -> Response:
        """Calls of the last seven days."""
        return ok(self.clock.time(), self.limits.usage(self._days(7)))

    def errors(self, request: Request) -> Response:
        """Today's error answers by code."""
        return ok(self.clock.time(), self.limits.errors(self._days(1)))

    def errors_7_days(self, request: Request) -> Response:
        """Error answers of the last seven days."""
        return ok(self.clock.time(), self.limits.errors(self._days(7)))

    def _paged(self, request: Request, kind: str, items: list[dict[str, Any]]) -> Response:
        now = self.clock.time()
        size = batch_size(request, now)
        start = decode_position(request, kind, now)
        page = items[start : start + size]
        extra = {"nextPageToken": encode_position(kind, start + size)} if start + size < len(items) else {}
        return ok(now, page, **extra)

    def lists(self, request: Request) -> Response:
        """Static lists, filterable by ``id`` and ``name``."""
        ids = set(request.params("id"))
        names = set(request.params("name"))
        items = [
            {
                "id": row["id"],
                "name": row["name"],
                "description": row["description"],
                "programName": row["program_name"],
                "workspaceName": "Default",
                "createdAt": iso_from_ts(row["created_ts"]),
                "updatedAt": iso_from_ts(row["created_ts"]),
            }
            for row in self.store.lists()
            if (not ids or str(row["id"]) in ids) and (not names or row["name"] in names)
        ]
        return self._paged(request, "lists", items)

    def campaigns(self, request: Request) -> Response:
        """Smart campaigns, filterable by ``id`` and ``name``."""
        ids = set(request.params("id"))
        names = set(request.params("name"))
        created = iso_from_ts(self.created_ts)
        programs = {pid: name for pid, name, _, _ in PROGRAMS}
        items = [
            {
                "id": cid,
                "name": name,
                "description": "",
                "type": kind,
                "programName": programs[pid],
                "programId": pid,
                "workspaceName": "Default",
                "createdAt": created,
                "updatedAt": created,
                "active": kind == "trigger",
            }
            for cid, name, kind, pid in CAMPAIGNS
            if (not ids or str(cid) in ids) and (not names or name in names)
        ]
        return self._paged(request, "campaigns", items)

    def programs(self, request: Request) -> Response:
        """Asset programs with ``offset``/``maxReturn``; past the end only the "No assets found" warning."""
        now = self.clock.time()
        try:
            offset = int(request.param("offset") or 0)
            max_return = int(request.param("maxReturn") or 20)
        except ValueError:
            fail(now, "1003", "Invalid offset or maxReturn")
        if not 1 <= max_return <= MAX_ASSET_BATCH or offset < 0:
            fail(now, "1003", f"maxReturn must be between 1 and {MAX_ASSET_BATCH}")
        created = iso_from_ts(self.created_ts).replace("Z", "Z+0000")
        updated = iso_from_ts(self.created_ts + timedelta(hours=1).total_seconds()).replace("Z", "Z+0000")
        items: list[dict[str, Any]] = [
            {
                "id": pid,
                "name": name,
                "description": "",
                "createdAt": created,
                "updatedAt": updated,
                "url": f"https://app-sandbox.marketo.com/#PG{pid}A1",
                "type": kind,
                "channel": channel,
                "folder": {"type": "Folder", "value": 1, "folderName": "Marketing Activities"},
                "status": "",
                "workspace": "Default",
                "tags": [],
                "costs": None,
            }
            for pid, name, kind, channel in PROGRAMS
        ]
        page = items[offset : offset + max_return]
        if not page:
            return asset_ok(now, None, [NO_ASSETS])
        return asset_ok(now, page)
