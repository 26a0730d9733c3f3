"""Create-path first links and collision activities, as pure merges (issue 21 items 6 and 7).

The end-to-end forms (through the taps and the target's CLI) are in ``test_truthful_log.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from target_mktdyn_merge.core.activity import FieldChange
from target_mktdyn_merge.core.baseline import BaselineEntry, confirm_baseline
from target_mktdyn_merge.core.merge import CREATE_PATH_BLANK_RULE, CREATE_PATH_KEPT_RULE, PairInput, merge_pair
from target_mktdyn_merge.core.pair_merge import collision_activity, kept_differences
from target_mktdyn_merge.core.policies import SyncPolicy, asked_for_dynamics_lead

PERSON = {"firstName": "Dorothy", "lastName": "Keeper", "phone": "+1 555 0100", "title": None}
LEAD = {"firstname": "Dora", "lastname": "Keeper", "telephone1": None, "jobtitle": "Pigeon keeper"}


def lead_merge(*, create_path: bool, first_link: bool = True, **extra: Any) -> Any:
    return merge_pair(
        PairInput("lead", PERSON, LEAD, run_number=2, first_link=first_link, create_path=create_path, **extra)
    )


def test_a_create_path_first_link_fills_blanks_both_ways_and_keeps_differences() -> None:
    result = lead_merge(create_path=True)
    first, phone, title = result.decision("firstName"), result.decision("phone"), result.decision("title")
    assert (first.outcome, first.rule) == ("kept", CREATE_PATH_KEPT_RULE)
    assert (phone.outcome, phone.rule) == ("to_dynamics", CREATE_PATH_BLANK_RULE)
    assert (title.outcome, title.rule) == ("to_marketo", CREATE_PATH_BLANK_RULE)
    assert dict(result.to_dynamics) == {"telephone1": "+1 555 0100"}
    assert dict(result.to_marketo) == {"title": "Pigeon keeper"}
    assert kept_differences(result) == [
        {"field": "firstName", "column": "firstname", "marketo": "Dorothy", "dynamics": "Dora"}
    ]
    # The baseline takes both kept values, so that only a later change on either side flows.
    baseline = confirm_baseline({}, result)
    assert baseline["firstName"] == BaselineEntry(first.marketo_canonical, first.dynamics_canonical)
    assert first.marketo_canonical != first.dynamics_canonical
    later = merge_pair(
        PairInput("lead", PERSON, {**LEAD, "firstname": "Dot"}, run_number=3, baseline=baseline, first_link=False)
    )
    assert later.decision("firstName").outcome == "to_marketo"
    assert later.to_marketo["firstName"] == "Dot"


@pytest.mark.parametrize(
    ("create_path", "first_link"),
    [(False, True), (True, False)],
    ids=["initial-sync-first-link", "create-path-but-not-a-first-link"],
)
def test_without_a_create_path_first_link_the_authority_overwrites(create_path: bool, first_link: bool) -> None:
    result = lead_merge(create_path=create_path, first_link=first_link)
    assert result.decision("firstName").outcome == "to_dynamics"  # Marketo, the authority of a lead
    assert dict(result.to_dynamics)["firstname"] == "Dorothy"


@pytest.mark.parametrize(
    ("fields", "policy", "asked"),
    [
        ({"syncToDynamics": True}, SyncPolicy(), True),
        ({"syncToDynamics": "true"}, SyncPolicy(), True),
        ({"syncToDynamics": False}, SyncPolicy(), False),
        ({}, SyncPolicy(), False),
        ({"syncToDynamics": True}, SyncPolicy(create_in_dynamics="always"), False),
        ({"pushToCrm": True}, SyncPolicy(create_flag_field="pushToCrm"), True),
    ],
    ids=["flag-true", "flag-text-true", "flag-false", "flag-unknown", "policy-always", "own-flag-field"],
)
def test_who_is_on_the_create_path(fields: dict[str, Any], policy: SyncPolicy, asked: bool) -> None:
    assert asked_for_dynamics_lead(fields, policy) is asked


@pytest.mark.parametrize(
    ("entity", "winner", "direction", "old", "new"),
    [
        ("lead", "marketo", "to_dynamics", "D title", "M title"),
        ("contact", "dynamics", "to_marketo", "M title", "D title"),
    ],
)
def test_a_collision_reads_old_as_the_overwritten_value_and_new_as_the_winner(
    entity: str, winner: str, direction: str, old: str, new: str
) -> None:
    result = merge_pair(
        PairInput(
            entity,  # type: ignore[arg-type]
            {"title": "M title"},
            {"jobtitle": "D title"},
            run_number=5,
            baseline={"title": BaselineEntry("before", "before")},
        )
    )
    [decision] = result.collisions
    activity = collision_activity(decision, {"person_id": "1", "entity": entity, "dynamics_id": "d"})
    assert (activity.action, activity.direction, activity.winner) == ("collision", direction, winner)
    assert activity.fields == [FieldChange("title", old, new)]
    assert activity.details["marketo"] == "M title"
    assert activity.details["dynamics"] == "D title"
    assert activity.details["winner"] == winner
    assert activity.details["rule"] == activity.rule == decision.rule
