"""Properties of the merge over random pairs: idempotence, and authority deciding every collision."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from target_mktdyn_merge.core.baseline import BaselineEntry, confirm_baseline
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP, FieldMap, FieldRule
from target_mktdyn_merge.core.merge import FIRST_LINK_BLANK_RULE, NO_BASELINE_BLANK_RULE, PairInput, merge_pair
from target_mktdyn_merge.core.normalize import canonical
from target_mktdyn_merge.core.vocabulary import Entity, Side

from .test_normalize import LEAD_SOURCE

OPTIONS = {"leadsourcecode": LEAD_SOURCE}
MISSING = object()

# Small pools, so that equal, changed, blank and colliding values all come up often.
MARKETO_VALUES: dict[str, list[Any]] = {
    "string": [None, "", "Ann", " Ann ", "Bob", "Zoë"],
    "email": [None, "ann@x.com", " ANN@X.com", "bob@y.org"],
    "phone": [None, "+1 555", "555-0100"],
    "url": [None, "https://a.example", "https://b.example"],
    "text": [None, "a\r\nb", "a\nb", "c"],
    "boolean": [None, True, False, "true", 0],
    "option": [None, "Web", "web", "Seminar", "Trade Show"],
}
DYNAMICS_VALUES: dict[str, list[Any]] = {**MARKETO_VALUES, "option": [None, 8, 6, 7]}


@st.composite
def pairs(draw: st.DrawFn) -> PairInput:
    entity: Entity = draw(st.sampled_from(["lead", "contact"]))
    rules = []
    for rule in DEFAULT_FIELD_MAP.rules(entity):
        direction = draw(st.sampled_from([rule.direction, "both", "to_dynamics", "to_marketo", "none"]))
        authority: Side | None = draw(st.sampled_from([None, None, "marketo", "dynamics"]))
        rules.append(FieldRule(rule.marketo, rule.dynamics, rule.kind, direction, authority))
    field_map = FieldMap(lead=tuple(rules), contact=()) if entity == "lead" else FieldMap(lead=(), contact=tuple(rules))
    marketo: dict[str, Any] = {}
    dynamics: dict[str, Any] = {}
    baseline: dict[str, BaselineEntry] = {}
    for rule in rules:
        m_value = draw(st.sampled_from([MISSING, *MARKETO_VALUES[rule.kind]]))
        d_value = draw(st.sampled_from([MISSING, *DYNAMICS_VALUES[rule.kind]]))
        if m_value is not MISSING:
            marketo[rule.marketo] = m_value
        if d_value is not MISSING:
            dynamics[rule.dynamics] = d_value
        if draw(st.booleans()):
            baseline[rule.marketo] = BaselineEntry(
                canonical(rule.kind, draw(st.sampled_from(MARKETO_VALUES[rule.kind])), LEAD_SOURCE),
                canonical(rule.kind, draw(st.sampled_from(DYNAMICS_VALUES[rule.kind])), LEAD_SOURCE),
            )
    marketo_names = [rule.marketo for rule in rules]
    dynamics_names = [rule.dynamics for rule in rules]
    return PairInput(
        entity=entity,
        marketo=marketo,
        dynamics=dynamics,
        run_number=1,
        baseline=baseline,
        first_link=draw(st.booleans()),
        options=OPTIONS,
        marketo_read_only=frozenset(draw(st.lists(st.sampled_from(marketo_names), max_size=3))),
        dynamics_read_only=frozenset(draw(st.lists(st.sampled_from(dynamics_names), max_size=3))),
        field_map=field_map,
        authority_override=draw(st.sampled_from([None, "marketo", "dynamics"])),
    )


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(pairs())
def test_applying_the_planned_writes_then_merging_again_plans_nothing(pair: PairInput) -> None:
    result = merge_pair(pair)
    marketo = {**pair.marketo, **result.to_marketo}
    dynamics = {**pair.dynamics, **result.to_dynamics}
    baseline = confirm_baseline(
        pair.baseline if not pair.first_link else {},
        result,
        dynamics_stored=dynamics,
        marketo_stored=marketo,
        options=OPTIONS,
    )
    again = merge_pair(
        PairInput(
            entity=pair.entity,
            marketo=marketo,
            dynamics=dynamics,
            run_number=2,
            baseline=baseline,
            options=OPTIONS,
            marketo_read_only=pair.marketo_read_only,
            dynamics_read_only=pair.dynamics_read_only,
            field_map=pair.field_map,
            guards=result.guards,
            authority_override=pair.authority_override,
        )
    )
    assert not again.has_writes, [d for d in again.decisions if d.writes]


@PROPERTY_SETTINGS
@given(pairs())
def test_idempotent_even_when_the_writes_stay_pending(pair: PairInput) -> None:
    result = merge_pair(pair)
    marketo = {**pair.marketo, **result.to_marketo}
    dynamics = {**pair.dynamics, **result.to_dynamics}
    again = merge_pair(
        PairInput(
            entity=pair.entity, marketo=marketo, dynamics=dynamics, run_number=2, baseline=pair.baseline,
            first_link=pair.first_link, options=OPTIONS, marketo_read_only=pair.marketo_read_only,
            dynamics_read_only=pair.dynamics_read_only, field_map=pair.field_map, guards=result.guards,
            authority_override=pair.authority_override,
        )
    )  # fmt: skip
    assert not again.has_writes


def expected_authority(rule: FieldRule, pair: PairInput) -> Side:
    if rule.authority is not None:
        return rule.authority
    if rule.direction == "to_marketo":
        return "dynamics"
    if rule.direction == "to_dynamics":
        return "marketo"
    if pair.authority_override is not None:
        return pair.authority_override
    return "marketo" if pair.entity == "lead" else "dynamics"


@PROPERTY_SETTINGS
@given(pairs())
def test_every_collision_is_won_by_the_authority_unless_a_blank_met_a_value(pair: PairInput) -> None:
    result = merge_pair(pair)
    for decision in result.collisions:
        if decision.rule.startswith((FIRST_LINK_BLANK_RULE, NO_BASELINE_BLANK_RULE)):
            holder = "dynamics" if decision.marketo_canonical is None else "marketo"
            assert decision.winner == holder
            assert (decision.marketo_canonical is None) != (decision.dynamics_canonical is None)
        else:
            assert decision.winner == expected_authority(decision.mapping, pair)


@PROPERTY_SETTINGS
@given(pairs())
def test_writes_respect_direction_read_only_and_known_fields(pair: PairInput) -> None:
    result = merge_pair(pair)
    for decision in result.decisions:
        rule = decision.mapping
        if decision.outcome == "to_dynamics":
            assert rule.flows_to("dynamics")
            assert rule.dynamics not in pair.dynamics_read_only
        if decision.outcome == "to_marketo":
            assert rule.flows_to("marketo")
            assert rule.marketo not in pair.marketo_read_only
        if rule.marketo not in pair.marketo or rule.dynamics not in pair.dynamics:
            assert decision.outcome == "unknown"
    assert set(result.to_dynamics) <= set(pair.dynamics) - pair.dynamics_read_only
    assert set(result.to_marketo) <= set(pair.marketo) - pair.marketo_read_only
