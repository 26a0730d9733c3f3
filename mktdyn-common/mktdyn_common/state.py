"""What the taps tell the target through their STATE (docs/architecture.md §10: a store must match the bookmarks).

Each tap records in its stream's bookmark whether this run read the stream from its start (``full``: no
bookmark, or an expired Dataverse delta link) or only what changed since the bookmark (``incremental``). The
target compares it with its store: an incremental read into a store that never staged a full one means the
store is not the one Meltano's bookmarks were made with (deleted, replaced, a fresh worker), and merging from
it would diverge silently.
"""

from __future__ import annotations

#: The bookmark key: ``"full"`` or ``"incremental"``.
EXTRACTION = "extraction"
FULL = "full"
INCREMENTAL = "incremental"
