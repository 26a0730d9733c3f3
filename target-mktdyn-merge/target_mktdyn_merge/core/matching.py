"""Which Dynamics lead or contact a Marketo person pairs with (docs/architecture.md §4), and the reverse view.

Matching order for a person: the existing link; a contact whose ``originatingleadid`` is the linked lead
(the lead was qualified: the pair moves to the contact and authority switches to Dynamics); the normalized
email (trimmed, case-folded), contacts before leads. More than one candidate on either side is never
guessed: the person is skipped with an ``ambiguous_match`` activity.

The caller looks the candidates up in the store; this module only decides. It is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from target_mktdyn_merge.core.normalize import canonical, normalize_email
from target_mktdyn_merge.core.vocabulary import ENTITY_AUTHORITY, Entity, Side

MatchOutcome = Literal["linked", "moved_to_contact", "new_link", "ambiguous", "none"]
"""``linked``: existing link kept; ``moved_to_contact``: qualification moved the pair; ``new_link``: a new
pair by email; ``ambiguous``: more than one candidate, no guess; ``none``: nothing to pair with."""

ReverseOutcome = Literal["create_in_marketo", "person_exists", "filtered", "ambiguous"]
"""For an unlinked Dynamics row: create the person; a Marketo person has the email (the person-side
matching links it); excluded by the sync filter; more than one row of the winning kind shares the email."""


@dataclass(frozen=True)
class PersonRef:
    """A Marketo person, as matching needs it.

    Attributes:
        id: The Marketo lead id.
        email: The person's email as staged.
    """

    id: str
    email: str | None


@dataclass(frozen=True)
class DynamicsRow:
    """A Dynamics lead or contact, as matching needs it.

    Attributes:
        entity: ``lead`` or ``contact``.
        id: ``leadid`` / ``contactid``.
        email: ``emailaddress1`` as staged.
        statecode: The row's state (lead: 0 open, 1 qualified, 2 disqualified; contact: 0 active).
        originating_lead_id: A contact's ``_originatingleadid_value`` (the lead it was qualified from).
        linked_person_id: The Marketo person this row is already paired with, if any.
        sync_filter: The sync-filter column's value (``new_synctomkto``); None when unset or not read.
    """

    entity: Entity
    id: str
    email: str | None = None
    statecode: int | None = None
    originating_lead_id: str | None = None
    linked_person_id: str | None = None
    sync_filter: object = None


@dataclass(frozen=True)
class ExistingLink:
    """A person's current pair.

    Attributes:
        entity: The linked row's entity.
        dynamics_id: The linked row's id.
        row_exists: Whether the row is still in Dynamics (False once its delete was staged).
    """

    entity: Entity
    dynamics_id: str
    row_exists: bool = True


@dataclass(frozen=True)
class MatchResult:
    """The match of one Marketo person.

    Attributes:
        outcome: See ``MatchOutcome``.
        entity: The matched row's entity (linked, moved_to_contact, new_link).
        dynamics_id: The matched row's id.
        authority: The pair's authority: Marketo for a lead, Dynamics for a contact.
        first_link: Whether the pair is new in this run (merge with ``first_link=True``).
        reason: Why, in words, for the activity log.
        candidates: Ids of the rows considered (all of them when ambiguous).
    """

    outcome: MatchOutcome
    reason: str
    entity: Entity | None = None
    dynamics_id: str | None = None
    authority: Side | None = None
    first_link: bool = False
    candidates: tuple[str, ...] = ()


def match_person(
    person: PersonRef,
    link: ExistingLink | None,
    candidates: Sequence[DynamicsRow],
    *,
    qualified_contacts: Sequence[DynamicsRow] = (),
    persons_with_email: int = 1,
) -> MatchResult:
    """Match a Marketo person with a Dynamics lead or contact.

    Args:
        person: The person.
        link: Its existing link, if any.
        candidates: Dynamics leads and contacts with the person's normalized email (rows whose email does
            not match are ignored, so the caller may over-fetch).
        qualified_contacts: Contacts whose ``originatingleadid`` is the linked lead (only read when the link
            is to a lead).
        persons_with_email: How many Marketo persons (this one included) have this normalized email.

    Returns:
        The match. A link to a row that no longer exists falls through to email matching (the delete
        itself is the delete policy's business, which unlinks the pair first).
    """
    if link is not None and link.entity == "lead":
        moved = _qualified_successor(link, qualified_contacts)
        if moved is not None:
            return moved
    if link is not None and link.row_exists:
        return MatchResult(
            "linked",
            f"existing link to {link.entity} {link.dynamics_id}",
            entity=link.entity,
            dynamics_id=link.dynamics_id,
            authority=_entity_authority(link.entity),
        )
    key = normalize_email(person.email)
    gone = f"linked {link.entity} {link.dynamics_id} no longer exists; " if link is not None else ""
    if key is None:
        return MatchResult("none", f"{gone}the person has no email to match by")
    if persons_with_email > 1:
        return MatchResult("ambiguous", f"{gone}{persons_with_email} Marketo persons share the email {key}: no guess")
    return _match_by_email(person, key, candidates, gone)


def _qualified_successor(link: ExistingLink, qualified_contacts: Sequence[DynamicsRow]) -> MatchResult | None:
    """The contact a linked lead was qualified into (the pair moves to it); None when there is none."""
    successors = [row for row in qualified_contacts if row.originating_lead_id == link.dynamics_id]
    if len(successors) > 1:
        return MatchResult(
            "ambiguous",
            f"{len(successors)} contacts were qualified from lead {link.dynamics_id}: no guess",
            candidates=tuple(row.id for row in successors),
        )
    if not successors:
        return None
    contact = successors[0]
    return MatchResult(
        "moved_to_contact",
        f"lead {link.dynamics_id} was qualified into contact {contact.id}: the pair moves to the "
        "contact and Dynamics becomes the authority",
        entity="contact",
        dynamics_id=contact.id,
        authority="dynamics",
        first_link=True,
        candidates=(contact.id,),
    )


def _match_by_email(person: PersonRef, key: str, candidates: Sequence[DynamicsRow], gone: str) -> MatchResult:
    """A contact before any lead with the person's email; more than one of the winning kind is no guess."""
    same_email = [row for row in candidates if normalize_email(row.email) == key]
    for entity in ("contact", "lead"):
        rows = [row for row in same_email if row.entity == entity]
        if not rows:
            continue
        ids = tuple(row.id for row in rows)
        if len(rows) > 1:
            return MatchResult(
                "ambiguous", f"{gone}{len(rows)} Dynamics {entity}s have the email {key}: no guess", candidates=ids
            )
        row = rows[0]
        if row.linked_person_id is not None and row.linked_person_id != person.id:
            return MatchResult(
                "ambiguous",
                f"{gone}{entity} {row.id} has the email {key} but is already paired with Marketo person "
                f"{row.linked_person_id}: no guess",
                candidates=ids,
            )
        order = "a contact before any lead" if entity == "contact" else "the only lead, no contact"
        return MatchResult(
            "new_link",
            f"{gone}matched by email {key}: {order}",
            entity=row.entity,
            dynamics_id=row.id,
            authority=_entity_authority(row.entity),
            first_link=True,
            candidates=ids,
        )
    return MatchResult("none", f"{gone}no Dynamics lead or contact has the email {key}")


def passes_sync_filter(value: object) -> bool:
    """Whether a Dynamics row may be created in Marketo: only an explicit False excludes it.

    A column left unset (``None``) includes the row, as the native sync does when the filter field is
    added to an org with existing rows; ``False``, ``0`` and ``"false"`` exclude.
    """
    if value is None:
        return True
    return canonical("boolean", value) is not False


@dataclass(frozen=True)
class ReverseMatch:
    """What to do about Dynamics rows with an email no Marketo person is paired with.

    Attributes:
        outcome: See ``ReverseOutcome``.
        reason: Why, in words.
        row: The row to create the person from (``create_in_marketo``) or the one the filter excluded.
        candidates: Ids of the rows considered.
    """

    outcome: ReverseOutcome
    reason: str
    row: DynamicsRow | None = None
    candidates: tuple[str, ...] = ()


def match_dynamics_rows(rows: Sequence[DynamicsRow], marketo_person_ids: Sequence[str] = ()) -> ReverseMatch:
    """Decide, for the unlinked Dynamics rows sharing one normalized email, whether to create a person.

    Rows with the same email become *one* person, chosen contact before lead (a qualified lead and its
    contact must not become two persons). More than one row of the winning kind is ambiguous. The sync
    filter is read on the chosen row only: if a contact is excluded, no person is created from a lead
    with the same email either (the customer record said no). Rows with no email cannot be grouped: pass
    each alone.

    Args:
        rows: Unlinked rows with the same normalized email (or one row with no email). Rows already paired
            (``linked_person_id`` set) are ignored.
        marketo_person_ids: Marketo persons with that email: if any, the person-side matching pairs them
            and nothing is created here.

    Returns:
        The decision; whether ``create_in_marketo`` is on is the create policy's business.
    """
    unpaired = [row for row in rows if row.linked_person_id is None]
    ids = tuple(row.id for row in unpaired)
    if marketo_person_ids:
        return ReverseMatch(
            "person_exists",
            f"Marketo person {', '.join(marketo_person_ids)} has this email: matched from the person side",
            candidates=ids,
        )
    for entity in ("contact", "lead"):
        chosen = [row for row in unpaired if row.entity == entity]
        if not chosen:
            continue
        if len(chosen) > 1:
            return ReverseMatch(
                "ambiguous",
                f"{len(chosen)} Dynamics {entity}s share the email {normalize_email(chosen[0].email)}: no guess",
                candidates=tuple(row.id for row in chosen),
            )
        row = chosen[0]
        if not passes_sync_filter(row.sync_filter):
            return ReverseMatch(
                "filtered", f"{entity} {row.id}: the sync filter excludes it (explicit false)", row, ids
            )
        return ReverseMatch("create_in_marketo", f"{entity} {row.id} has no Marketo person", row, ids)
    return ReverseMatch("filtered", "no unpaired row to create from", candidates=ids)


def _entity_authority(entity: Entity) -> Side:
    return ENTITY_AUTHORITY[entity]
