"""Create/delete policies (docs/architecture.md §1 rows "Deletes do not always sync", "Sync Person to Microsoft")."""

from __future__ import annotations

from typing import Any

import pytest
from target_mktdyn_merge.core.delete_policy import decide_delete
from target_mktdyn_merge.core.fieldmap import parse_field_map
from target_mktdyn_merge.core.matching import DynamicsRow, MatchResult, ReverseMatch
from target_mktdyn_merge.core.policies import (
    SUBJECT_MAX_LENGTH,
    SubjectTemplateError,
    SyncPolicy,
    check_subject_template,
    decide_create_in_dynamics,
    decide_create_in_marketo,
    lead_create_payload,
    person_create_payload,
    render_subject,
    template_placeholders,
)

from .test_normalize import LEAD_SOURCE

OPTIONS = {"leadsourcecode": LEAD_SOURCE}
NO_MATCH = MatchResult("none", "no Dynamics lead or contact has the email")

CREATE_IN_DYNAMICS_CASES: list[tuple[str, str, dict[str, Any], MatchResult, bool, str]] = [
    # (id, setting, person fields, match, create?, reason)
    ("flagged-default-flag-true", "flagged", {"syncToDynamics": True}, NO_MATCH, True, "syncToDynamics is true"),
    ("flagged-flag-text-true", "flagged", {"syncToDynamics": "true"}, NO_MATCH, True, "is true"),
    ("flagged-flag-false", "flagged", {"syncToDynamics": False}, NO_MATCH, False, "is not true"),
    ("flagged-flag-null", "flagged", {"syncToDynamics": None}, NO_MATCH, False, "is not true"),
    ("flagged-flag-not-extracted", "flagged", {"email": "a@b.c"}, NO_MATCH, False, "was not extracted"),
    ("never", "never", {"syncToDynamics": True}, NO_MATCH, False, "create_in_dynamics=never"),
    ("always", "always", {}, NO_MATCH, True, "create_in_dynamics=always"),
    (
        "existing-lead-linked-not-duplicated",
        "always",
        {"syncToDynamics": True},
        MatchResult("new_link", "matched", "lead", "L1", "marketo", True),
        False,
        "new_link",
    ),
    (
        "existing-link-no-create",
        "always",
        {},
        MatchResult("linked", "existing", "contact", "C1", "dynamics"),
        False,
        "linked",
    ),
    ("ambiguous-no-create", "always", {}, MatchResult("ambiguous", "2 leads"), False, "ambiguous"),
]


@pytest.mark.parametrize(
    ("setting", "person", "match", "create", "reason"),
    [c[1:] for c in CREATE_IN_DYNAMICS_CASES],
    ids=[c[0] for c in CREATE_IN_DYNAMICS_CASES],
)
def test_create_in_dynamics(
    setting: str, person: dict[str, Any], match: MatchResult, create: bool, reason: str
) -> None:
    decision = decide_create_in_dynamics(person, match, SyncPolicy(create_in_dynamics=setting))  # type: ignore[arg-type]
    assert decision.create is create
    assert decision.target == "dynamics"
    assert reason in decision.reason


def test_create_flag_field_is_configurable() -> None:
    policy = SyncPolicy(create_flag_field="pushToCrm")
    assert decide_create_in_dynamics({"pushToCrm": True, "syncToDynamics": False}, NO_MATCH, policy).create


ROW = DynamicsRow("lead", "L1", "a@b.c")
CREATE_IN_MARKETO_CASES = [
    ("default-creates", ReverseMatch("create_in_marketo", "lead L1 has no Marketo person", ROW), True, True),
    ("setting-off", ReverseMatch("create_in_marketo", "lead L1 has no Marketo person", ROW), False, False),
    ("sync-filter-excluded", ReverseMatch("filtered", "explicit false", ROW), True, False),
    ("person-exists", ReverseMatch("person_exists", "person 1"), True, False),
    ("ambiguous", ReverseMatch("ambiguous", "2 contacts"), True, False),
]


@pytest.mark.parametrize(
    ("reverse", "setting", "create"),
    [c[1:] for c in CREATE_IN_MARKETO_CASES],
    ids=[c[0] for c in CREATE_IN_MARKETO_CASES],
)
def test_create_in_marketo(reverse: ReverseMatch, setting: bool, create: bool) -> None:
    decision = decide_create_in_marketo(reverse, SyncPolicy(create_in_marketo=setting))
    assert decision.create is create
    assert decision.target == "marketo"


SUBJECT_CASES = [
    (
        "default-template",
        "Marketo person {firstName} {lastName}",
        {"firstName": "Zoë", "lastName": "O'Brien"},
        "Marketo person Zoë O'Brien",
    ),
    (
        "blank-collapses",
        "Marketo person {firstName} {lastName}",
        {"firstName": None, "lastName": "Lee"},
        "Marketo person Lee",
    ),
    ("format-spec", "{company:.4} - {email}", {"company": "Acme Industries", "email": "a@b.c"}, "Acme - a@b.c"),
    ("braces-escaped", "{{web}} {email}", {"email": "a@b.c"}, "{web} a@b.c"),
    ("no-placeholders", "From Marketo", {}, "From Marketo"),
]


@pytest.mark.parametrize(
    ("template", "person", "subject"), [c[1:] for c in SUBJECT_CASES], ids=[c[0] for c in SUBJECT_CASES]
)
def test_render_subject(template: str, person: dict[str, Any], subject: str) -> None:
    assert render_subject(template, person) == subject


def test_subject_cut_to_dataverse_max_length() -> None:
    assert len(render_subject("{lastName}", {"lastName": "x" * 400})) == SUBJECT_MAX_LENGTH


TEMPLATE_ERRORS = [
    ("unknown-placeholder", "Marketo person {nickname}", {"firstName": "A"}, r"placeholder \{nickname\}"),
    ("positional", "Person {}", {}, r"positional placeholder"),
    ("numbered", "Person {0}", {}, r"positional placeholder \{0\}"),
    ("attribute-access", "{email.__class__}", {"email": "a"}, r"attribute and index access"),
    ("index-access", "{email[0]}", {"email": "a"}, r"attribute and index access"),
    ("unbalanced", "Person {firstName", {"firstName": "A"}, r"malformed template"),
]


@pytest.mark.parametrize(
    ("template", "person", "message"), [c[1:] for c in TEMPLATE_ERRORS], ids=[c[0] for c in TEMPLATE_ERRORS]
)
def test_subject_template_errors_name_the_placeholder(template: str, person: dict[str, Any], message: str) -> None:
    with pytest.raises(SubjectTemplateError, match=message):
        render_subject(template, person)


def test_check_subject_template_against_marketo_fields() -> None:
    assert check_subject_template("{firstName} {lastName}", {"firstName", "lastName"}) == []
    assert check_subject_template("{firstName} {nick} {nick}", {"firstName"}) == [
        "lead_subject_template: placeholder {nick} is not a Marketo field"
    ]
    assert check_subject_template("{0}", {"firstName"})[0].startswith("lead_subject_template: positional")
    assert template_placeholders("{a} {b:>3} {a}") == ("a", "b", "a")


def test_lead_create_payload() -> None:
    person = {
        "email": " Ann@X.com",
        "firstName": "Ann",
        "lastName": "Lee",
        "leadSource": "web",
        "title": None,
        "company": "Acme",
        "unsubscribed": None,
        "syncToDynamics": True,
    }
    payload = lead_create_payload(person, SyncPolicy(), options=OPTIONS, not_creatable={"donotbulkemail"})
    assert payload == {
        "emailaddress1": "Ann@X.com",
        "firstname": "Ann",
        "lastname": "Lee",
        "leadsourcecode": 8,
        "companyname": "Acme",
        "subject": "Marketo person Ann Lee",
    }  # a create copies every mapped field, one-way ones included (direction governs changes); blanks left out


def test_create_payloads_leave_out_switched_off_fields() -> None:
    field_map = parse_field_map({"lead": {"company": {"direction": "none"}, "title": {"direction": "to_marketo"}}})
    person = {"email": "a@b.c", "firstName": "Ann", "lastName": "Lee", "company": "Acme", "title": "CTO"}
    payload = lead_create_payload(person, SyncPolicy(), field_map=field_map)
    assert "companyname" not in payload
    assert payload["jobtitle"] == "CTO"
    row = {"emailaddress1": "a@b.c", "companyname": "Acme", "jobtitle": "CTO"}
    assert person_create_payload(row, "lead", field_map=field_map) == {"email": "a@b.c", "title": "CTO"}


def test_lead_create_payload_template_error_names_placeholder() -> None:
    with pytest.raises(SubjectTemplateError, match=r"\{lastName\}"):
        lead_create_payload({"firstName": "Ann"}, SyncPolicy())


@pytest.mark.parametrize(
    ("entity", "row", "expected"),
    [
        (
            "lead",
            {
                "emailaddress1": "a@b.c",
                "companyname": "Acme",
                "leadsourcecode": 6,
                "jobtitle": None,
                "donotbulkemail": True,
            },
            {"email": "a@b.c", "company": "Acme", "leadSource": "Seminar", "unsubscribed": True},
        ),
        (
            "contact",
            {"emailaddress1": "a@b.c", "companyname": "Acme", "firstname": "Ann", "lastname": "Lee"},
            {"email": "a@b.c", "lastName": "Lee"},
        ),
    ],
    ids=["lead-with-company", "contact-read-only-skipped"],
)
def test_person_create_payload(entity: str, row: dict[str, Any], expected: dict[str, Any]) -> None:
    payload = person_create_payload(row, entity, options=OPTIONS, marketo_read_only={"firstName"})  # type: ignore[arg-type]
    assert payload == expected


DELETE_CASES: list[tuple[str, str, str, str, bool, str, str, dict[str, Any]]] = [
    # (id, deleted side, setting, policy value, target exists, action, activity, flag payload)
    ("marketo-deleted-ignore-default", "marketo", "delete_from_dynamics", "ignore", True, "ignore", "unlinked", {}),
    (
        "marketo-deleted-flag",
        "marketo",
        "delete_from_dynamics",
        "flag",
        True,
        "flag",
        "flagged",
        {"mkt_deletedinmarketo": True},
    ),
    ("marketo-deleted-delete", "marketo", "delete_from_dynamics", "delete", True, "delete", "deleted", {}),
    ("dynamics-deleted-ignore-default", "dynamics", "delete_from_marketo", "ignore", True, "ignore", "unlinked", {}),
    (
        "dynamics-deleted-flag",
        "dynamics",
        "delete_from_marketo",
        "flag",
        True,
        "flag",
        "flagged",
        {"deletedInDynamics": True},
    ),
    ("dynamics-deleted-delete", "dynamics", "delete_from_marketo", "delete", True, "delete", "deleted", {}),
    ("both-deleted-unlink-only", "dynamics", "delete_from_marketo", "delete", False, "ignore", "unlinked", {}),
]


@pytest.mark.parametrize(
    ("deleted", "setting", "value", "exists", "action", "activity", "payload"),
    [c[1:] for c in DELETE_CASES],
    ids=[c[0] for c in DELETE_CASES],
)
def test_delete_policy(
    deleted: str, setting: str, value: str, exists: bool, action: str, activity: str, payload: dict[str, Any]
) -> None:
    policy = SyncPolicy.from_config({setting: value})
    target_id = "L1" if deleted == "marketo" else "101"
    decision = decide_delete(deleted, target_id, policy, dynamics_entity="lead", target_exists=exists)  # type: ignore[arg-type]
    assert decision.action == action
    assert decision.activity == activity
    assert dict(decision.flag_payload) == payload
    assert decision.unlink is True  # the pair is always unlinked
    assert decision.target_side == ("dynamics" if deleted == "marketo" else "marketo")
    assert decision.target_id == target_id
    assert decision.target_entity == ("lead" if deleted == "marketo" else None)


def test_delete_flag_fields_are_configurable() -> None:
    policy = SyncPolicy(delete_from_dynamics="flag", delete_flag_field_dynamics="new_gone")
    assert decide_delete("marketo", "C1", policy, dynamics_entity="contact").flag_payload == {"new_gone": True}


def test_policy_defaults_from_empty_config() -> None:
    assert SyncPolicy.from_config({"create_in_dynamics": None}) == SyncPolicy(
        create_in_dynamics="flagged",
        create_flag_field="syncToDynamics",
        create_in_marketo=True,
        delete_from_dynamics="ignore",
        delete_from_marketo="ignore",
        delete_flag_field_dynamics="mkt_deletedinmarketo",
        delete_flag_field_marketo="deletedInDynamics",
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"create_in_dynamics": "sometimes"}, r"create_in_dynamics: 'sometimes'"),
        ({"delete_from_marketo": "purge"}, r"delete_from_marketo: 'purge'"),
        ({"create_in_marketo": "yes"}, r"create_in_marketo: expected true or false"),
        ({"create_flag_field": " "}, r"create_flag_field: expected a field name"),
        ({"lead_subject_template": "{0}"}, r"lead_subject_template: positional"),
    ],
    ids=["bad-create", "bad-delete", "bad-bool", "blank-flag-field", "bad-template"],
)
def test_policy_config_errors_name_the_setting(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncPolicy.from_config(config)
