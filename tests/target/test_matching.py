"""Matching a Marketo person with a Dynamics lead or contact (docs/architecture.md §4), and the reverse view."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from target_mktdyn_merge.core.matching import (
    DynamicsRow,
    ExistingLink,
    PersonRef,
    match_dynamics_rows,
    match_person,
    passes_sync_filter,
)
from target_mktdyn_merge.core.normalize import normalize_email

PERSON = PersonRef("101", "  Ann.Lee@Example.com ")
EMAIL = "ann.lee@example.com"
LEAD = DynamicsRow("lead", "L1", "ann.lee@example.com", statecode=0)
LEAD_2 = DynamicsRow("lead", "L2", "ANN.LEE@example.com", statecode=0)
CONTACT = DynamicsRow("contact", "C1", "Ann.Lee@example.com ", statecode=0)
CONTACT_2 = DynamicsRow("contact", "C2", "ann.lee@example.com", statecode=0)
QUALIFIED = DynamicsRow("contact", "C9", "other@example.com", originating_lead_id="L1")
QUALIFIED_2 = DynamicsRow("contact", "C8", "ann.lee@example.com", originating_lead_id="L1")


@dataclass(frozen=True)
class MatchCase:
    id: str
    outcome: str
    entity: str | None = None
    dynamics_id: str | None = None
    authority: str | None = None
    first_link: bool = False
    person: PersonRef = PERSON
    link: ExistingLink | None = None
    candidates: tuple[DynamicsRow, ...] = ()
    qualified: tuple[DynamicsRow, ...] = ()
    persons_with_email: int = 1
    reason: str = ""
    considered: tuple[str, ...] | None = None


MATCH_CASES = [
    MatchCase(
        "existing-link-kept",
        "linked",
        "lead",
        "L1",
        "marketo",
        link=ExistingLink("lead", "L1"),
        candidates=(CONTACT,),
        reason="existing link",
    ),
    MatchCase(
        "existing-contact-link-kept",
        "linked",
        "contact",
        "C1",
        "dynamics",
        link=ExistingLink("contact", "C1"),
        candidates=(CONTACT_2,),
    ),
    MatchCase(
        "existing-link-kept-even-if-email-ambiguous",
        "linked",
        "lead",
        "L1",
        "marketo",
        link=ExistingLink("lead", "L1"),
        persons_with_email=2,
    ),
    MatchCase(
        "qualified-lead-moves-to-contact",
        "moved_to_contact",
        "contact",
        "C9",
        "dynamics",
        True,
        link=ExistingLink("lead", "L1"),
        qualified=(QUALIFIED,),
        reason="was qualified into contact C9",
    ),
    MatchCase(
        "qualified-lead-deleted-still-moves",
        "moved_to_contact",
        "contact",
        "C9",
        "dynamics",
        True,
        link=ExistingLink("lead", "L1", row_exists=False),
        qualified=(QUALIFIED,),
    ),
    MatchCase(
        "qualification-ignores-other-leads-contacts",
        "linked",
        "lead",
        "L1",
        "marketo",
        link=ExistingLink("lead", "L1"),
        qualified=(DynamicsRow("contact", "C7", originating_lead_id="L5"),),
    ),
    MatchCase(
        "two-contacts-from-one-lead-ambiguous",
        "ambiguous",
        link=ExistingLink("lead", "L1"),
        qualified=(QUALIFIED, QUALIFIED_2),
        reason="2 contacts were qualified from lead L1",
        considered=("C9", "C8"),
    ),
    MatchCase(
        "contact-link-not-moved-by-qualification",
        "linked",
        "contact",
        "C1",
        "dynamics",
        link=ExistingLink("contact", "C1"),
        qualified=(QUALIFIED,),
    ),
    MatchCase("email-lead-only", "new_link", "lead", "L1", "marketo", True, candidates=(LEAD,), reason="the only lead"),
    MatchCase(
        "email-contact-before-lead",
        "new_link",
        "contact",
        "C1",
        "dynamics",
        True,
        candidates=(LEAD, CONTACT),
        reason="a contact before any lead",
    ),
    MatchCase(
        "email-one-contact-beats-two-leads",
        "new_link",
        "contact",
        "C1",
        "dynamics",
        True,
        candidates=(LEAD, LEAD_2, CONTACT),
    ),
    MatchCase(
        "email-two-contacts-ambiguous",
        "ambiguous",
        candidates=(CONTACT, CONTACT_2, LEAD),
        reason="2 Dynamics contacts",
        considered=("C1", "C2"),
    ),
    MatchCase(
        "email-two-leads-ambiguous",
        "ambiguous",
        candidates=(LEAD, LEAD_2),
        reason="2 Dynamics leads",
        considered=("L1", "L2"),
    ),
    MatchCase(
        "email-two-marketo-persons-ambiguous",
        "ambiguous",
        candidates=(LEAD,),
        persons_with_email=2,
        reason="2 Marketo persons share the email",
    ),
    MatchCase(
        "email-candidate-paired-elsewhere-ambiguous",
        "ambiguous",
        candidates=(DynamicsRow("contact", "C1", EMAIL, linked_person_id="202"),),
        reason="already paired with Marketo person 202",
    ),
    MatchCase(
        "email-other-emails-ignored",
        "none",
        candidates=(DynamicsRow("lead", "L3", "bob@example.com"),),
        reason="no Dynamics lead or contact",
    ),
    MatchCase("no-candidates-none", "none"),
    MatchCase("no-email-none", "none", person=PersonRef("101", " "), candidates=(LEAD,), reason="no email"),
    MatchCase(
        "deleted-link-falls-through-to-email",
        "new_link",
        "contact",
        "C1",
        "dynamics",
        True,
        link=ExistingLink("lead", "L1", row_exists=False),
        candidates=(CONTACT,),
        reason="no longer exists",
    ),
    MatchCase(
        "deleted-link-nothing-else-none",
        "none",
        link=ExistingLink("contact", "C1", row_exists=False),
        reason="linked contact C1 no longer exists",
    ),
]


@pytest.mark.parametrize("case", MATCH_CASES, ids=[case.id for case in MATCH_CASES])
def test_match_person(case: MatchCase) -> None:
    result = match_person(
        case.person,
        case.link,
        case.candidates,
        qualified_contacts=case.qualified,
        persons_with_email=case.persons_with_email,
    )
    assert result.outcome == case.outcome, result.reason
    assert (result.entity, result.dynamics_id, result.authority) == (case.entity, case.dynamics_id, case.authority)
    assert result.first_link == case.first_link
    assert case.reason in result.reason
    if case.considered is not None:
        assert result.candidates == case.considered
    if case.outcome in {"ambiguous", "none"}:
        assert result.dynamics_id is None  # never a guess


@pytest.mark.parametrize(
    ("value", "included"),
    [(None, True), (True, True), (False, False), (0, False), ("false", False), (1, True), ("true", True)],
    ids=[
        "unset-included",
        "true-included",
        "false-excluded",
        "zero-excluded",
        "text-false-excluded",
        "one",
        "text-true",
    ],
)
def test_sync_filter_only_explicit_false_excludes(value: object, included: bool) -> None:
    assert passes_sync_filter(value) is included


def row(entity: str, row_id: str, sync_filter: object = None, linked: str | None = None) -> DynamicsRow:
    return DynamicsRow(entity, row_id, EMAIL, sync_filter=sync_filter, linked_person_id=linked)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReverseCase:
    id: str
    rows: tuple[DynamicsRow, ...]
    outcome: str
    chosen: str | None = None
    persons: tuple[str, ...] = field(default_factory=tuple)


REVERSE_CASES = [
    ReverseCase("lead-created", (row("lead", "L1"),), "create_in_marketo", "L1"),
    ReverseCase("filter-true-created", (row("contact", "C1", True),), "create_in_marketo", "C1"),
    ReverseCase("filter-false-excluded", (row("lead", "L1", False),), "filtered", "L1"),
    ReverseCase("contact-before-lead", (row("lead", "L1"), row("contact", "C1")), "create_in_marketo", "C1"),
    ReverseCase(
        "excluded-contact-blocks-lead", (row("lead", "L1", True), row("contact", "C1", False)), "filtered", "C1"
    ),
    ReverseCase("two-contacts-ambiguous", (row("contact", "C1"), row("contact", "C2")), "ambiguous"),
    ReverseCase(
        "paired-rows-ignored", (row("contact", "C1", linked="7"), row("lead", "L1")), "create_in_marketo", "L1"
    ),
    ReverseCase("person-exists-no-create", (row("lead", "L1"),), "person_exists", persons=("101",)),
    ReverseCase("all-paired-nothing", (row("lead", "L1", linked="7"),), "filtered"),
]


@pytest.mark.parametrize("case", REVERSE_CASES, ids=[case.id for case in REVERSE_CASES])
def test_match_dynamics_rows(case: ReverseCase) -> None:
    result = match_dynamics_rows(case.rows, case.persons)
    assert result.outcome == case.outcome, result.reason
    assert (result.row.id if result.row else None) == case.chosen


@pytest.mark.parametrize(
    ("value", "key"), [(" A@B.Com ", "a@b.com"), ("", None), (None, None)], ids=["folded", "empty", "none"]
)
def test_normalize_email(value: object, key: str | None) -> None:
    assert normalize_email(value) == key
