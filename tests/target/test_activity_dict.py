"""The hand-written activity serialisation stays equal to ``dataclasses.asdict`` (which it replaced for speed)."""

from __future__ import annotations

from dataclasses import asdict

from target_mktdyn_merge.core.activity import Activity, FieldChange, activity_from_dict, activity_to_dict


def test_activity_to_dict_is_asdict_and_round_trips() -> None:
    activity = Activity(
        "collision",
        "42",
        "lead",
        "0f8a562b-c7c0-4a00-b066-fb6cc89ca1e6",
        "to_dynamics",
        [FieldChange("title", "CFO", "Senior CFO"), FieldChange("phone", None, "+1 206 555 0000")],
        "marketo",
        "lead: Marketo is the authority",
        None,
        None,
        {"op_id": 7, "candidates": ["a", "b"]},
    )
    data = activity_to_dict(activity)
    assert data == asdict(activity)
    data["details"]["candidates"].append("c")  # a copy: the activity is not changed through it
    assert activity.details == {"op_id": 7, "candidates": ["a", "b"]}
    assert activity_from_dict(activity_to_dict(activity)) == activity
