"""The streams the target accepts and what it needs to know about each (docs/architecture.md §9.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamSpec:
    """Where a stream comes from and which of its properties carry the key, timestamp and email."""

    name: str
    system: str  # marketo | dynamics
    entity: str  # person | lead | contact
    key: str
    replication_key: str
    email: str


STREAMS: dict[str, StreamSpec] = {
    spec.name: spec
    for spec in (
        StreamSpec("marketo_leads", "marketo", "person", "id", "updatedAt", "email"),
        StreamSpec("dynamics_leads", "dynamics", "lead", "leadid", "modifiedon", "emailaddress1"),
        StreamSpec("dynamics_contacts", "dynamics", "contact", "contactid", "modifiedon", "emailaddress1"),
    )
}

#: Dynamics entity -> stream name.
DYNAMICS_STREAM = {"lead": "dynamics_leads", "contact": "dynamics_contacts"}
#: Dynamics entity -> entity set name in the Web API.
ENTITY_SET = {"lead": "leads", "contact": "contacts"}


def written_stream(system: str, entity: str | None) -> str:
    """The stream of a record written to ``system`` (a Marketo person, or a Dynamics lead/contact)."""
    return "marketo_leads" if system == "marketo" else DYNAMICS_STREAM[entity or "lead"]


class UnknownStreamError(ValueError):
    """A stream this target does not merge; refused instead of silently dropped."""

    def __init__(self, stream_name: str) -> None:
        known = ", ".join(sorted(STREAMS))
        super().__init__(
            f"stream {stream_name!r} is not one target-mktdyn-merge can merge (expected one of: {known}); "
            "rename it with a stream map or deselect it"
        )
