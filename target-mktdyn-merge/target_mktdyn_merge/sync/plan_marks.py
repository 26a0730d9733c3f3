"""What a planning pass has done so far: the current batch's marks in memory, earlier batches' in the store.

A pass must not decide on a person twice (a lead and a contact can both lead to one person) nor plan two
persons' creates for one email. Python sets of those grew with every person of an initial sync; a
:class:`PassMarks` holds only what the current batch asked about and made, reads earlier batches' marks from
``run_marks`` (one query per batch, ``prefetch``) and hands its new marks to the batch's commit, which writes them
in the batch's transaction (``store/run_marks.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.run_marks import marked_among


class PassMarks:
    """One kind of mark of one pass (``store.run_marks.PERSON`` or ``CREATE_EMAIL``)."""

    def __init__(self, store: Store, run_id: str, kind: str) -> None:
        self.store = store
        self.run_id = run_id
        self.kind = kind
        #: Marks made by the current batch, not committed yet.
        self.new: set[str] = set()
        #: What the store said about the marks asked for in this batch.
        self._known: dict[str, bool] = {}

    def prefetch(self, candidates: Iterable[str | None]) -> None:
        """Ask the store once about every mark the batch may test."""
        wanted = {c for c in candidates if c and c not in self._known}
        if not wanted:
            return
        with self.store.transaction() as connection:
            found = marked_among(connection, self.run_id, self.kind, wanted)
        self._known.update({mark: mark in found for mark in wanted})

    def __contains__(self, mark: object) -> bool:
        if not isinstance(mark, str) or not mark:
            return False
        if mark in self.new:
            return True
        if mark not in self._known:
            self.prefetch([mark])
        return self._known[mark]

    def add(self, mark: str | None) -> None:
        """Mark it (written with the batch's decisions)."""
        if mark:
            self.new.add(mark)

    def committed(self) -> None:
        """The batch was written: forget it (memory stays bounded by the batch)."""
        self.new.clear()
        self._known.clear()
