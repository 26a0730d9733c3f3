"""The systems' metadata answers kept in the store between runs (``metadata_max_age_minutes``).

Both API clients ask a ``MetadataAnswers`` keeper before they send a metadata request (mktdyn_common). A merge
run on a five-minute schedule asked for the same describe and column metadata every time (21 requests, which
real Dataverse answers slowly); kept here, an answer is reused until it is older than the maximum age, then
read again. A field an administrator changes reaches the sync within that age; ``mktdyn check`` and the
real-time path always read fresh. The key is the request (its URL), stored hashed so any length fits.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from target_mktdyn_merge.core.values import utc_iso
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.connection import StoreConnection


class StoredMetadataAnswers:
    """Metadata answers in the store, good for ``max_age``; counts what it served and what it kept."""

    def __init__(self, store: StoreConnection, max_age: timedelta) -> None:
        self.store = store
        self.max_age = max_age
        self.served = 0
        self.kept = 0

    def get(self, key: str) -> Any | None:
        """The answer kept for ``key`` if younger than the maximum age."""
        if self.max_age <= timedelta(0):
            return None
        table = tables.metadata_answers
        oldest = utc_iso(datetime.now(UTC) - self.max_age)
        with self.store.transaction() as connection:
            body = connection.execute(
                sa.select(table.c.body).where(table.c.key_hash == _hash(key), table.c.fetched_at >= oldest)
            ).scalar()
        if body is None:
            return None
        self.served += 1
        return json.loads(body)

    def put(self, key: str, body: Any) -> None:
        """Keep the API's answer for ``key`` (replacing an older one)."""
        table = tables.metadata_answers
        with self.store.transaction() as connection:
            connection.execute(sa.delete(table).where(table.c.key_hash == _hash(key)))
            connection.execute(
                sa.insert(table).values(
                    key_hash=_hash(key), request=key, fetched_at=utc_iso(datetime.now(UTC)), body=json.dumps(body)
                )
            )
        self.kept += 1


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
