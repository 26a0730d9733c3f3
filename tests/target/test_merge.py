"""The three-way merge, case by case, including every merge row of docs/architecture.md §1's promise table."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import pytest
from target_mktdyn_merge.core.baseline import BaselineEntry, clear_field, confirm_baseline, snapshot_baseline
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP, FieldMap, FieldRule
from target_mktdyn_merge.core.guards import FieldGuard, GuardPolicy
from target_mktdyn_merge.core.merge import (
    FIRST_LINK_BLANK_RULE,
    NO_BASELINE_BLANK_RULE,
    MergeResult,
    PairInput,
    merge_pair,
)
from target_mktdyn_merge.core.normalize import OptionSet, canonical
from target_mktdyn_merge.core.vocabulary import Side

from .test_normalize import LEAD_SOURCE

OPTIONS = {"leadsourcecode": LEAD_SOURCE}
DEFAULT_GUARD = GuardPolicy()


def override(entity: str, marketo: str, **changes: Any) -> FieldMap:
    """The default map with one rule of one entity changed."""
    rules = tuple(
        FieldRule(**{**rule.__dict__, **changes}) if rule.marketo == marketo else rule
        for rule in DEFAULT_FIELD_MAP.rules(entity)
    )
    return (
        FieldMap(lead=rules, contact=DEFAULT_FIELD_MAP.contact)
        if entity == "lead"
        else FieldMap(lead=DEFAULT_FIELD_MAP.lead, contact=rules)
    )


@dataclass(frozen=True)
class Case:
    """One merge case: one field of one pair, and what must come out."""

    id: str
    entity: str
    marketo: dict[str, Any]
    dynamics: dict[str, Any]
    marketo_field: str
    outcome: str
    to_dynamics: dict[str, Any] = dataclass_field(default_factory=dict)
    to_marketo: dict[str, Any] = dataclass_field(default_factory=dict)
    baseline: dict[str, tuple[Any, Any]] = dataclass_field(default_factory=dict)
    first_link: bool = False
    winner: Side | None = None
    rule: str = ""
    collision: bool = False
    field_map: FieldMap = DEFAULT_FIELD_MAP
    authority_override: Side | None = None
    marketo_read_only: frozenset[str] = frozenset()
    dynamics_read_only: frozenset[str] = frozenset()


def run(case: Case) -> MergeResult:
    return merge_pair(
        PairInput(
            entity=case.entity,  # type: ignore[arg-type]
            marketo=case.marketo,
            dynamics=case.dynamics,
            run_number=1,
            baseline={name: BaselineEntry(*values) for name, values in case.baseline.items()},
            first_link=case.first_link,
            options=OPTIONS,
            marketo_read_only=case.marketo_read_only,
            dynamics_read_only=case.dynamics_read_only,
            field_map=case.field_map,
            authority_override=case.authority_override,
        )
    )


def check(case: Case) -> None:
    result = run(case)
    decision = result.decision(case.marketo_field)
    assert decision.outcome == case.outcome, decision.rule
    assert dict(result.to_dynamics) == case.to_dynamics
    assert dict(result.to_marketo) == case.to_marketo
    assert decision.winner == case.winner
    assert case.rule in decision.rule
    assert decision.collision == case.collision
    assert (decision in result.collisions) == case.collision


ANN = ("Ann", "Ann")

# docs/architecture.md §1 promise table, the rows the merge keeps (the others: test_policies, test_matching,
# test_fieldmap).
PROMISE_CASES = [
    # "The sync is bidirectional: a change to a Dynamics lead/contact or to a Marketo person appears in both."
    Case(
        "bidirectional-marketo-change-reaches-dynamics-lead",
        "lead",
        {"firstName": "Anna"},
        {"firstname": "Ann"},
        "firstName",
        "to_dynamics",
        to_dynamics={"firstname": "Anna"},
        baseline={"firstName": ANN},
        winner="marketo",
        rule="only Marketo changed",
    ),
    Case(
        "bidirectional-dynamics-change-reaches-marketo-lead",
        "lead",
        {"firstName": "Ann"},
        {"firstname": "Anne"},
        "firstName",
        "to_marketo",
        to_marketo={"firstName": "Anne"},
        baseline={"firstName": ANN},
        winner="dynamics",
        rule="only Dynamics changed",
    ),
    Case(
        "bidirectional-marketo-change-reaches-dynamics-contact",
        "contact",
        {"firstName": "Anna"},
        {"firstname": "Ann"},
        "firstName",
        "to_dynamics",
        to_dynamics={"firstname": "Anna"},
        baseline={"firstName": ANN},
        winner="marketo",
        rule="only Marketo changed",
    ),
    Case(
        "bidirectional-dynamics-change-reaches-marketo-contact",
        "contact",
        {"firstName": "Ann"},
        {"firstname": "Anne"},
        "firstName",
        "to_marketo",
        to_marketo={"firstName": "Anne"},
        baseline={"firstName": ANN},
        winner="dynamics",
        rule="only Dynamics changed",
    ),
    # "Same field changed in both systems: Marketo wins for persons/leads, Dynamics wins for contacts."
    Case(
        "collision-lead-marketo-wins",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CTO"},
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        rule="lead: Marketo is the authority",
        collision=True,
    ),
    Case(
        "collision-contact-dynamics-wins",
        "contact",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_marketo",
        to_marketo={"title": "VP"},
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="contact: Dynamics is the authority",
        collision=True,
    ),
    # "Authority and direction can be overridden per field in config."
    Case(
        "collision-lead-field-override-dynamics",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_marketo",
        to_marketo={"title": "VP"},
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="field override: authority=dynamics",
        collision=True,
        field_map=override("lead", "title", authority="dynamics"),
    ),
    Case(
        "collision-contact-field-override-marketo",
        "contact",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CTO"},
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        rule="field override: authority=marketo",
        collision=True,
        field_map=override("contact", "title", authority="marketo"),
    ),
    Case(
        "direction-override-to-dynamics-blocks-dynamics-change",
        "lead",
        {"title": "Dev"},
        {"jobtitle": "VP"},
        "title",
        "blocked",
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="direction to_dynamics: Dynamics values do not flow to Marketo",
        field_map=override("lead", "title", direction="to_dynamics"),
    ),
    # "You select the fields to sync": a field not extracted is unknown, never blank.
    Case(
        "selection-unknown-marketo-field-untouched",
        "lead",
        {},
        {"firstname": "Ann"},
        "firstName",
        "unknown",
        rule="Marketo did not send the field",
    ),
    # "Dynamics validation rules are respected": read-only columns are never sent; bad option labels reach
    # validation unchanged, which names the column.
    Case(
        "validation-read-only-column-never-sent",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "Dev"},
        "title",
        "blocked",
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        rule="Dynamics cannot write jobtitle",
        dynamics_read_only=frozenset({"jobtitle"}),
    ),
    Case(
        "validation-unknown-option-label-left-to-validation",
        "lead",
        {"leadSource": "Webinar"},
        {"leadsourcecode": 8},
        "leadSource",
        "to_dynamics",
        to_dynamics={"leadsourcecode": "Webinar"},
        baseline={"leadSource": ("web", "web")},
        winner="marketo",
        rule="only Marketo changed",
    ),
]

MERGE_CASES = [
    Case(
        "equal",
        "lead",
        {"firstName": "Ann"},
        {"firstname": "Ann"},
        "firstName",
        "in_sync",
        rule="equal after normalization",
    ),
    Case("equal-after-trim", "contact", {"firstName": " Ann "}, {"firstname": "Ann"}, "firstName", "in_sync"),
    Case("equal-email-case", "lead", {"email": "Ann@X.com"}, {"emailaddress1": " ann@x.COM"}, "email", "in_sync"),
    Case(
        "equal-both-changed-to-same",
        "contact",
        {"firstName": "Jo"},
        {"firstname": "Jo"},
        "firstName",
        "in_sync",
        baseline={"firstName": ANN},
    ),
    Case("equal-both-blank", "lead", {"firstName": None}, {"firstname": ""}, "firstName", "in_sync", first_link=True),
    Case(
        "collision-no-baseline-lead-marketo-wins",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CTO"},
        winner="marketo",
        rule="lead: Marketo is the authority",
        collision=True,
    ),
    Case(
        "collision-no-baseline-contact-dynamics-wins",
        "contact",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_marketo",
        to_marketo={"title": "VP"},
        winner="dynamics",
        rule="contact: Dynamics is the authority",
        collision=True,
    ),
    Case(
        "collision-first-link-lead",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CTO"},
        first_link=True,
        winner="marketo",
        collision=True,
    ),
    Case(
        "collision-pair-override-after-qualification",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_marketo",
        to_marketo={"title": "VP"},
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="pair override: Dynamics is the authority",
        collision=True,
        authority_override="dynamics",
    ),
    Case(
        "collision-field-override-beats-pair-override",
        "lead",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CTO"},
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        rule="field override: authority=marketo",
        collision=True,
        authority_override="dynamics",
        field_map=override("lead", "title", authority="marketo"),
    ),
    Case(
        "collision-one-way-field-source-wins",
        "lead",
        {"company": "Acme Ltd"},
        {"companyname": "Acme"},
        "company",
        "to_marketo",
        to_marketo={"company": "Acme"},
        baseline={"company": ("X", "X")},
        winner="dynamics",
        rule="direction to_marketo: Dynamics is the field's only source",
        collision=True,
    ),
    # A blank never overwrites a value on a first link: both directions, both entities, whatever the authority.
    Case(
        "first-link-blank-marketo-lead",
        "lead",
        {"phone": None},
        {"telephone1": "+1 555"},
        "phone",
        "to_marketo",
        to_marketo={"phone": "+1 555"},
        first_link=True,
        winner="dynamics",
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-blank-dynamics-lead",
        "lead",
        {"phone": "+1 555"},
        {"telephone1": ""},
        "phone",
        "to_dynamics",
        to_dynamics={"telephone1": "+1 555"},
        first_link=True,
        winner="marketo",
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-blank-marketo-contact",
        "contact",
        {"phone": " "},
        {"telephone1": "+1 555"},
        "phone",
        "to_marketo",
        to_marketo={"phone": "+1 555"},
        first_link=True,
        winner="dynamics",
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-blank-dynamics-contact",
        "contact",
        {"phone": "+1 555"},
        {"telephone1": None},
        "phone",
        "to_dynamics",
        to_dynamics={"telephone1": "+1 555"},
        first_link=True,
        winner="marketo",
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-ignores-stale-baseline",
        "contact",
        {"phone": "+1 555"},
        {"telephone1": None},
        "phone",
        "to_dynamics",
        to_dynamics={"telephone1": "+1 555"},
        first_link=True,
        winner="marketo",
        baseline={"phone": ("+1 555", None)},
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-blank-on-one-way-field-blocked",
        "lead",
        {"company": "Acme"},
        {"companyname": None},
        "company",
        "blocked",
        first_link=True,
        winner="marketo",
        rule=FIRST_LINK_BLANK_RULE,
        collision=True,
    ),
    Case(
        "no-baseline-field-blank-never-overwrites",
        "contact",
        {"city": "Oslo"},
        {"address1_city": None},
        "city",
        "to_dynamics",
        to_dynamics={"address1_city": "Oslo"},
        winner="marketo",
        rule=NO_BASELINE_BLANK_RULE,
        collision=True,
    ),
    Case(
        "first-link-boolean-false-is-a-value",
        "contact",
        {"unsubscribed": True},
        {"donotbulkemail": False},
        "unsubscribed",
        "to_marketo",
        to_marketo={"unsubscribed": False},
        first_link=True,
        winner="dynamics",
        rule="contact: Dynamics is the authority",
        collision=True,
    ),
    # After a baseline, a blank is a deliberate clear and propagates.
    Case(
        "clear-in-marketo-propagates",
        "contact",
        {"title": None},
        {"jobtitle": "Dev"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": None},
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        rule="only Marketo changed",
    ),
    Case(
        "clear-in-dynamics-propagates",
        "lead",
        {"title": "Dev"},
        {"jobtitle": ""},
        "title",
        "to_marketo",
        to_marketo={"title": None},
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="only Dynamics changed",
    ),
    Case(
        "clear-collision-lead-marketo-clear-wins",
        "lead",
        {"title": None},
        {"jobtitle": "VP"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": None},
        baseline={"title": ("Dev", "Dev")},
        winner="marketo",
        collision=True,
    ),
    # Unknown (missing) fields.
    Case(
        "unknown-dynamics-field-untouched",
        "lead",
        {"firstName": "Ann"},
        {},
        "firstName",
        "unknown",
        rule="Dynamics did not send the field",
    ),
    Case("unknown-both-sides", "contact", {}, {}, "firstName", "unknown", rule="Marketo and Dynamics"),
    # Read-only on either side.
    Case(
        "read-only-marketo-never-sent",
        "contact",
        {"title": "Dev"},
        {"jobtitle": "VP"},
        "title",
        "blocked",
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="Marketo cannot write title",
        marketo_read_only=frozenset({"title"}),
    ),
    Case(
        "read-only-collision-blocked",
        "contact",
        {"title": "CTO"},
        {"jobtitle": "VP"},
        "title",
        "blocked",
        baseline={"title": ("Dev", "Dev")},
        winner="dynamics",
        rule="Marketo cannot write title",
        collision=True,
        marketo_read_only=frozenset({"title"}),
    ),
    # Options.
    Case("option-label-equals-value", "lead", {"leadSource": "web"}, {"leadsourcecode": 8}, "leadSource", "in_sync"),
    Case(
        "option-marketo-label-to-dynamics-value",
        "lead",
        {"leadSource": "Trade Show"},
        {"leadsourcecode": 8},
        "leadSource",
        "to_dynamics",
        to_dynamics={"leadsourcecode": 7},
        baseline={"leadSource": ("web", "web")},
        winner="marketo",
    ),
    Case(
        "option-dynamics-value-to-marketo-label",
        "contact",
        {"leadSource": "Web"},
        {"leadsourcecode": 6},
        "leadSource",
        "to_marketo",
        to_marketo={"leadSource": "Seminar"},
        baseline={"leadSource": ("web", "web")},
        winner="dynamics",
    ),
    Case(
        "option-unknown-dynamics-value-passed-through",
        "contact",
        {"leadSource": "Web"},
        {"leadsourcecode": 99},
        "leadSource",
        "to_marketo",
        to_marketo={"leadSource": 99},
        baseline={"leadSource": ("web", "web")},
        winner="dynamics",
    ),
    # Stable divergence: neither side changed since its own baseline.
    Case(
        "stable-dynamics-truncated",
        "lead",
        {"title": "Chief Technology Officer"},
        {"jobtitle": "Chief Tech"},
        "title",
        "stable",
        baseline={"title": ("Chief Technology Officer", "Chief Tech")},
        rule="neither side changed",
    ),
    Case(
        "stable-then-marketo-change-flows",
        "lead",
        {"title": "CEO"},
        {"jobtitle": "Chief Tech"},
        "title",
        "to_dynamics",
        to_dynamics={"jobtitle": "CEO"},
        baseline={"title": ("Chief Technology Officer", "Chief Tech")},
        winner="marketo",
    ),
    Case(
        "boolean-none-equals-false",
        "lead",
        {"unsubscribed": None},
        {"donotbulkemail": False},
        "unsubscribed",
        "in_sync",
    ),
    Case(
        "boolean-unsubscribe-flows",
        "lead",
        {"unsubscribed": True},
        {"donotbulkemail": False},
        "unsubscribed",
        "to_dynamics",
        to_dynamics={"donotbulkemail": True},
        baseline={"unsubscribed": (False, False)},
        winner="marketo",
    ),
    Case(
        "email-keeps-source-spelling",
        "lead",
        {"email": "Ann.Lee@X.com"},
        {"emailaddress1": "ann@x.com"},
        "email",
        "to_dynamics",
        to_dynamics={"emailaddress1": "Ann.Lee@X.com"},
        baseline={"email": ("ann@x.com", "ann@x.com")},
        winner="marketo",
    ),
]


@pytest.mark.parametrize("case", PROMISE_CASES, ids=[case.id for case in PROMISE_CASES])
def test_promise_table(case: Case) -> None:
    check(case)


@pytest.mark.parametrize("case", MERGE_CASES, ids=[case.id for case in MERGE_CASES])
def test_merge(case: Case) -> None:
    check(case)


# Direction overrides: each direction, a change on each side (lead; baseline "Dev" on both sides).
DIRECTION_TABLE = [
    ("both", "marketo", "to_dynamics"),
    ("both", "dynamics", "to_marketo"),
    ("to_dynamics", "marketo", "to_dynamics"),
    ("to_dynamics", "dynamics", "blocked"),
    ("to_marketo", "marketo", "blocked"),
    ("to_marketo", "dynamics", "to_marketo"),
    ("none", "marketo", "blocked"),
    ("none", "dynamics", "blocked"),
]


@pytest.mark.parametrize(
    ("direction", "changed", "outcome"), DIRECTION_TABLE, ids=[f"{d}-{c}-changed" for d, c, _ in DIRECTION_TABLE]
)
def test_direction_override(direction: str, changed: str, outcome: str) -> None:
    marketo = {"title": "CTO" if changed == "marketo" else "Dev"}
    dynamics = {"jobtitle": "CTO" if changed == "dynamics" else "Dev"}
    result = run(
        Case(
            "d",
            "lead",
            marketo,
            dynamics,
            "title",
            outcome,
            baseline={"title": ("Dev", "Dev")},
            field_map=override("lead", "title", direction=direction),
        )
    )
    assert result.decision("title").outcome == outcome
    assert dict(result.to_dynamics) == ({"jobtitle": "CTO"} if outcome == "to_dynamics" else {})
    assert dict(result.to_marketo) == ({"title": "CTO"} if outcome == "to_marketo" else {})


@pytest.mark.parametrize(
    ("direction", "outcome"),
    [("both", "to_dynamics"), ("to_dynamics", "to_dynamics"), ("to_marketo", "to_marketo"), ("none", "blocked")],
    ids=["both-authority", "to_dynamics-source-wins", "to_marketo-source-wins", "none-blocked"],
)
def test_direction_decides_collisions_on_one_way_fields(direction: str, outcome: str) -> None:
    result = run(
        Case(
            "d",
            "lead",
            {"title": "CTO"},
            {"jobtitle": "VP"},
            "title",
            outcome,
            baseline={"title": ("Dev", "Dev")},
            field_map=override("lead", "title", direction=direction),
        )
    )
    assert result.decision("title").outcome == outcome
    assert result.decision("title").collision


KIND_MAP = FieldMap(
    lead=(
        FieldRule("lastVisitAt", "new_lastvisit", "datetime"),
        FieldRule("dateOfBirth", "birthdate", "date"),
        FieldRule("annualRevenue", "revenue", "number"),
        FieldRule("numberOfEmployees", "numberofemployees", "integer"),
    ),
    contact=(),
)
KIND_CASES = [
    (
        "datetime-object-vs-text",
        "lastVisitAt",
        __import__("datetime").datetime(2024, 1, 5, 17, 30, 0, 250000, tzinfo=__import__("datetime").UTC),
        "2024-01-05T17:30:00Z",
        "in_sync",
        {},
    ),
    ("datetime-offset-vs-z", "lastVisitAt", "2024-01-05T19:30:00+02:00", "2024-01-05T17:30:00Z", "in_sync", {}),
    (
        "datetime-change-written-utc",
        "lastVisitAt",
        "2024-02-01T10:00:00+01:00",
        "2024-01-05T17:30:00Z",
        "to_dynamics",
        {"new_lastvisit": "2024-02-01T09:00:00Z"},
    ),
    ("date-midnight-datetime-vs-date", "dateOfBirth", "1990-04-01T00:00:00+00:00", "1990-04-01", "in_sync", {}),
    ("number-trailing-zeros", "annualRevenue", "1000000.00", 1000000, "in_sync", {}),
    ("number-change", "annualRevenue", "1500000.50", 1000000, "to_dynamics", {"revenue": 1500000.5}),
    ("integer-text-vs-int", "numberOfEmployees", "250", 250, "in_sync", {}),
]


@pytest.mark.parametrize(
    ("marketo_field", "marketo_value", "dynamics_value", "outcome", "to_dynamics"),
    [case[1:] for case in KIND_CASES],
    ids=[case[0] for case in KIND_CASES],
)
def test_kind_normalization_in_merge(
    marketo_field: str, marketo_value: Any, dynamics_value: Any, outcome: str, to_dynamics: dict[str, Any]
) -> None:
    rule = KIND_MAP.by_marketo("lead", marketo_field)
    assert rule is not None
    baseline = {marketo_field: ("old", canonical(rule.kind, dynamics_value))}
    result = run(
        Case(
            "k",
            "lead",
            {marketo_field: marketo_value},
            {rule.dynamics: dynamics_value},
            marketo_field,
            outcome,
            baseline=baseline,
            field_map=KIND_MAP,
        )
    )
    assert result.decision(marketo_field).outcome == outcome
    assert dict(result.to_dynamics) == to_dynamics


def test_unknown_fields_produce_no_write_and_no_baseline() -> None:
    result = run(Case("u", "lead", {"firstName": "Ann"}, {"lastname": "Lee"}, "firstName", "unknown"))
    assert not result.has_writes
    assert {d.outcome for d in result.decisions} == {"unknown"}
    assert confirm_baseline({}, result) == {}


# --- baselines after writes -------------------------------------------------------------------------------


def test_confirmed_dynamics_write_takes_what_dynamics_stored() -> None:
    long_title = "Chief Technology Officer of Everything"
    result = run(
        Case(
            "c",
            "lead",
            {"title": long_title},
            {"jobtitle": "Dev"},
            "title",
            "to_dynamics",
            baseline={"title": ("Dev", "Dev")},
        )
    )
    baseline = confirm_baseline(
        {"title": BaselineEntry("Dev", "Dev")}, result, dynamics_stored={"jobtitle": long_title[:20]}
    )
    assert baseline["title"] == BaselineEntry(long_title, long_title[:20])
    # Next run: the truncated value is a stable divergence, not a change: no write, no ping-pong.
    again = run(
        Case(
            "c",
            "lead",
            {"title": long_title},
            {"jobtitle": long_title[:20]},
            "title",
            "stable",
            baseline={"title": (baseline["title"].marketo, baseline["title"].dynamics)},
        )
    )
    assert again.decision("title").outcome == "stable"
    assert not again.has_writes


def test_column_missing_from_representation_counts_as_sent() -> None:
    result = run(
        Case(
            "c",
            "lead",
            {"leadSource": "Seminar"},
            {"leadsourcecode": 8},
            "leadSource",
            "to_dynamics",
            baseline={"leadSource": ("web", "web")},
        )
    )
    baseline = confirm_baseline({}, result, dynamics_stored={}, options=OPTIONS)
    assert baseline["leadSource"] == BaselineEntry("seminar", "seminar")


def test_confirmed_marketo_write_takes_what_marketo_stored() -> None:
    result = run(
        Case(
            "c",
            "contact",
            {"title": "Dev"},
            {"jobtitle": "VP"},
            "title",
            "to_marketo",
            baseline={"title": ("Dev", "Dev")},
        )
    )
    baseline = confirm_baseline({}, result, marketo_stored={"title": "VP "})
    assert baseline["title"] == BaselineEntry("VP", "VP")


@pytest.mark.parametrize("side", ["dynamics", "marketo"])
def test_pending_or_failed_write_leaves_baseline_unchanged(side: str) -> None:
    previous = {"title": BaselineEntry("Dev", "Dev")}
    marketo, dynamics = (
        ({"title": "CTO"}, {"jobtitle": "Dev"}) if side == "dynamics" else ({"title": "Dev"}, {"jobtitle": "CTO"})
    )
    result = run(Case("p", "lead", marketo, dynamics, "title", "x", baseline={"title": ("Dev", "Dev")}))
    assert result.has_writes
    assert confirm_baseline(previous, result) == previous


def test_in_sync_and_blocked_fields_set_both_sides_to_current_values() -> None:
    result = run(
        Case(
            "s",
            "lead",
            {"firstName": " Ann", "company": "Mine"},
            {"firstname": "Ann", "companyname": "X"},
            "firstName",
            "in_sync",
            baseline={"company": ("X", "X")},
        )
    )
    assert result.decision("company").outcome == "blocked"
    baseline = confirm_baseline({"company": BaselineEntry("X", "X")}, result)
    assert baseline == {"firstName": BaselineEntry("Ann", "Ann"), "company": BaselineEntry("Mine", "X")}
    # The blocked change is reported once; afterwards it is a stable divergence.
    again = run(
        Case(
            "s",
            "lead",
            {"company": "Mine"},
            {"companyname": "X"},
            "company",
            "stable",
            baseline={"company": ("Mine", "X")},
        )
    )
    assert again.decision("company").outcome == "stable"


def test_snapshot_baseline_covers_fields_known_on_both_sides() -> None:
    baseline = snapshot_baseline(
        "lead",
        {"firstName": "Ann", "leadSource": "Web", "title": "Dev"},
        {"firstname": "Ann", "leadsourcecode": 8},
        options=OPTIONS,
    )
    assert baseline == {"firstName": BaselineEntry("Ann", "Ann"), "leadSource": BaselineEntry("web", "web")}


def test_baseline_and_guard_serialize_for_the_store() -> None:
    entry = BaselineEntry("a", True)
    guard = FieldGuard("to_marketo", (3, 4), frozen=True, frozen_at_run=4)
    assert BaselineEntry.from_dict(entry.to_dict()) == entry
    assert FieldGuard.from_dict(guard.to_dict()) == guard


# --- the ping-pong guard ------------------------------------------------------------------------------------


def flip_run(
    run_number: int, write_side: str, guards: dict[str, FieldGuard], policy: GuardPolicy = DEFAULT_GUARD
) -> MergeResult:
    """A run in which one side changed the title since the last write (so the merge writes to the other)."""
    baseline = {"title": BaselineEntry("A", "A")}
    marketo, dynamics = (
        ({"title": "B"}, {"jobtitle": "A"}) if write_side == "dynamics" else ({"title": "A"}, {"jobtitle": "B"})
    )
    return merge_pair(
        PairInput(
            entity="lead",
            marketo=marketo,
            dynamics=dynamics,
            run_number=run_number,
            baseline=baseline,
            guards=guards,
            guard_policy=policy,
        )
    )


GUARD_TABLE = [
    # (id, [(run, side written to)], outcomes)
    (
        "same-direction-never-freezes",
        [(1, "dynamics"), (2, "dynamics"), (3, "dynamics"), (4, "dynamics")],
        ["to_dynamics"] * 4,
    ),
    (
        "third-reversal-in-window-freezes",
        [(1, "dynamics"), (2, "marketo"), (3, "dynamics"), (4, "marketo")],
        ["to_dynamics", "to_marketo", "to_dynamics", "frozen"],
    ),
    (
        "frozen-stays-frozen",
        [(1, "dynamics"), (2, "marketo"), (3, "dynamics"), (4, "marketo"), (5, "dynamics")],
        ["to_dynamics", "to_marketo", "to_dynamics", "frozen", "frozen"],
    ),
    (
        "reversals-spread-beyond-window-forgotten",
        [(1, "dynamics"), (8, "marketo"), (16, "dynamics"), (24, "marketo")],
        ["to_dynamics", "to_marketo", "to_dynamics", "to_marketo"],
    ),
    (
        "two-reversals-then-same-direction",
        [(1, "dynamics"), (2, "marketo"), (3, "dynamics"), (4, "dynamics")],
        ["to_dynamics", "to_marketo", "to_dynamics", "to_dynamics"],
    ),
]


@pytest.mark.parametrize(("steps", "outcomes"), [c[1:] for c in GUARD_TABLE], ids=[c[0] for c in GUARD_TABLE])
def test_ping_pong_guard(steps: list[tuple[int, str]], outcomes: list[str]) -> None:
    guards: dict[str, FieldGuard] = {}
    seen = []
    for run_number, side in steps:
        result = flip_run(run_number, side, guards)
        decision = result.decision("title")
        seen.append(decision.outcome)
        if decision.outcome == "frozen":
            assert not result.has_writes
            assert "ping-pong guard" in decision.rule
            assert "mktdyn resync --field title" in decision.rule
        guards = dict(result.guards)
    assert seen == outcomes


def test_frozen_field_in_sync_stays_in_sync_without_writes() -> None:
    guards = {"title": FieldGuard("to_dynamics", (2, 3, 4), frozen=True, frozen_at_run=4)}
    result = merge_pair(
        PairInput(entity="lead", marketo={"title": "A"}, dynamics={"jobtitle": "A"}, run_number=5, guards=guards)
    )
    assert result.decision("title").outcome == "in_sync"
    assert result.guards["title"].frozen


def test_resync_clears_the_guard_and_the_baseline() -> None:
    guards = {
        "title": FieldGuard("to_dynamics", (2, 3, 4), frozen=True, frozen_at_run=4),
        "city": FieldGuard("to_marketo"),
    }
    baseline = {"title": BaselineEntry("A", "A"), "city": BaselineEntry("Oslo", "Oslo")}
    assert flip_run(5, "marketo", guards).decision("title").outcome == "frozen"
    baseline, guards = clear_field(baseline, guards, "title")
    assert baseline == {"city": BaselineEntry("Oslo", "Oslo")}
    assert set(guards) == {"city"}
    result = merge_pair(
        PairInput(
            entity="lead",
            marketo={"title": "A"},
            dynamics={"jobtitle": "B"},
            run_number=6,
            baseline=baseline,
            guards=guards,
        )
    )
    assert result.decision("title").outcome == "to_dynamics"  # no baseline: lead authority, Marketo wins
    assert not result.guards["title"].frozen


def test_guard_policy_is_configurable() -> None:
    guards: dict[str, FieldGuard] = {}
    outcomes = []
    for run_number, side in [(1, "dynamics"), (2, "marketo")]:
        result = flip_run(run_number, side, guards, GuardPolicy(max_reversals=1, window_runs=5))
        outcomes.append(result.decision("title").outcome)
        guards = dict(result.guards)
    assert outcomes == ["to_dynamics", "frozen"]


def test_decision_lookup_and_option_sets_by_column() -> None:
    result = run(Case("l", "lead", {"firstName": "Ann"}, {"firstname": "Ann"}, "firstName", "in_sync"))
    with pytest.raises(KeyError):
        result.decision("nope")
    assert isinstance(OPTIONS["leadsourcecode"], OptionSet)
