"""The sync's vocabulary, one name per concept: systems, entities, streams, keys, entity sets, actions.

Every other module takes these names from here, so "a Marketo person's id" is ``person_id`` everywhere and a
stream's name is spelled once (docs/architecture.md §9.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Side = Literal["marketo", "dynamics"]
"""One of the two systems; also the type of an authority (the side that wins a collision)."""
SIDES: tuple[Side, ...] = get_args(Side)

Entity = Literal["lead", "contact"]
"""The Dynamics table a Marketo person is paired with."""
ENTITIES: tuple[Entity, ...] = get_args(Entity)
#: The order planning takes the Dynamics entities in: contacts first. A contact is what a qualified lead
#: became, so the planning passes, prefetches and candidate lists read contacts before leads and every run
#: meets the same records in the same order.
CONTACTS_FIRST: tuple[Entity, Entity] = ("contact", "lead")

ENTITY_AUTHORITY: dict[str, Side] = {"lead": "marketo", "contact": "dynamics"}
"""Who wins a collision by default: marketing owns prospects (leads), sales owns customers (contacts)."""

WriteDirection = Literal["to_dynamics", "to_marketo"]
"""The two ways a value can be written."""

PERSONS_STREAM = "marketo_leads"
"""The stream of Marketo persons (the tap's name for them)."""

ORIGINATING_LEAD = "_originatingleadid_value"
"""A contact's lookup of the lead it was qualified from (Dataverse's name): it moves that lead's pair."""

ActivityAction = Literal[
    "created",
    "updated",
    "linked",
    "unchanged",
    "collision",
    "validation_failed",
    "write_failed",
    "deleted",
    "flagged",
    "unlinked",
    "ambiguous_match",
    "skipped",
    "deferred",
    "write_ignored",
]
"""What an activity-log entry says happened to a record (docs/architecture.md §5)."""
ACTIVITY_ACTIONS: tuple[ActivityAction, ...] = get_args(ActivityAction)
#: Actions that count against ``max_record_failures``.
FAILURE_ACTIONS: tuple[ActivityAction, ...] = ("validation_failed", "write_failed", "write_ignored")

RequestKind = Literal["sync_person", "full_sync"]
"""What a real-time request asks (``mktdyn serve``, ``mktdyn sync --person``): ``sync_person`` is Marketo's "Sync
Person to Microsoft" (create a missing lead, otherwise only link); ``full_sync`` is the two-way merge of one person
by the batch's rules."""
REQUEST_KINDS: tuple[RequestKind, ...] = get_args(RequestKind)

WriteAction = Literal["create", "update", "delete", "flag", "activity"]
"""What a planned write does to its system (``activity``: a custom activity on the Marketo person)."""
WRITE_ACTIONS: tuple[WriteAction, ...] = get_args(WriteAction)


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
        StreamSpec(PERSONS_STREAM, "marketo", "person", "id", "updatedAt", "email"),
        StreamSpec("dynamics_leads", "dynamics", "lead", "leadid", "modifiedon", "emailaddress1"),
        StreamSpec("dynamics_contacts", "dynamics", "contact", "contactid", "modifiedon", "emailaddress1"),
    )
}

#: Dynamics entity -> stream name.
DYNAMICS_STREAM: dict[str, str] = {"lead": "dynamics_leads", "contact": "dynamics_contacts"}
#: Dynamics entity -> entity set name in the Web API.
ENTITY_SET = {"lead": "leads", "contact": "contacts"}


def written_stream(system: str, entity: str | None) -> str:
    """The stream of a record written to ``system`` (a Marketo person, or a Dynamics lead/contact)."""
    return PERSONS_STREAM if system == "marketo" else DYNAMICS_STREAM[entity or "lead"]


class UnknownStreamError(ValueError):
    """A stream this target does not merge; refused instead of silently dropped."""

    def __init__(self, stream_name: str) -> None:
        known = ", ".join(sorted(STREAMS))
        super().__init__(
            f"stream {stream_name!r} is not one target-mktdyn-merge can merge (expected one of: {known}); "
            "rename it with a stream map or deselect it"
        )
