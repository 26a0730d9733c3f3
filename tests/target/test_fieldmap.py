"""The default field map, the ``field_map`` setting's parser, and the metadata check."""

from __future__ import annotations

import json
from typing import Any

import pytest
from target_mktdyn_merge.core.fieldmap import (
    DEFAULT_FIELD_MAP,
    FieldMap,
    FieldRule,
    parse_field_map,
    validate_field_map,
)

SHARED_PAIRS = {
    "email": ("emailaddress1", "email"),
    "firstName": ("firstname", "string"),
    "lastName": ("lastname", "string"),
    "title": ("jobtitle", "string"),
    "phone": ("telephone1", "phone"),
    "mobilePhone": ("mobilephone", "phone"),
    "website": ("websiteurl", "url"),
    "address": ("address1_line1", "text"),
    "city": ("address1_city", "string"),
    "state": ("address1_stateorprovince", "string"),
    "postalCode": ("address1_postalcode", "string"),
    "country": ("address1_country", "string"),
    "leadSource": ("leadsourcecode", "option"),
    "unsubscribed": ("donotbulkemail", "boolean"),
}


@pytest.mark.parametrize("entity", ["lead", "contact"])
@pytest.mark.parametrize("marketo", sorted(SHARED_PAIRS))
def test_default_map_shared_fields(entity: str, marketo: str) -> None:
    rule = DEFAULT_FIELD_MAP.by_marketo(entity, marketo)
    assert rule is not None
    assert (rule.dynamics, rule.kind, rule.direction, rule.authority) == (*SHARED_PAIRS[marketo], "both", None)
    assert DEFAULT_FIELD_MAP.by_dynamics(entity, rule.dynamics) == rule


def test_default_map_company_is_lead_only_and_dynamics_to_marketo() -> None:
    assert DEFAULT_FIELD_MAP.by_marketo("lead", "company") == FieldRule(
        "company", "companyname", "string", direction="to_marketo"
    )
    assert DEFAULT_FIELD_MAP.by_marketo("contact", "company") is None
    assert DEFAULT_FIELD_MAP.by_dynamics("contact", "companyname") is None


def test_map_lookups() -> None:
    assert "company" in DEFAULT_FIELD_MAP.marketo_fields()
    assert "companyname" not in DEFAULT_FIELD_MAP.dynamics_columns("contact")
    with pytest.raises(ValueError, match="unknown entity 'account'"):
        DEFAULT_FIELD_MAP.rules("account")


@pytest.mark.parametrize("empty", [None, "", {}, "{}"], ids=["none", "empty-text", "empty-object", "empty-json"])
def test_empty_setting_is_the_default_map(empty: object) -> None:
    assert parse_field_map(empty) == DEFAULT_FIELD_MAP


def test_list_form_replaces_an_entity_and_keeps_the_other() -> None:
    field_map = parse_field_map(
        {
            "lead": [
                {"marketo": "email", "dynamics": "emailaddress1", "kind": "email"},
                {
                    "marketo": "rating",
                    "dynamics": "leadqualitycode",
                    "kind": "option",
                    "direction": "to_marketo",
                    "authority": "dynamics",
                },
            ]
        }
    )
    assert field_map.lead == (
        FieldRule("email", "emailaddress1", "email"),
        FieldRule("rating", "leadqualitycode", "option", "to_marketo", "dynamics"),
    )
    assert field_map.contact == DEFAULT_FIELD_MAP.contact


def test_override_form_tweaks_adds_and_removes() -> None:
    field_map = parse_field_map(
        json.dumps(
            {
                "contact": {
                    "title": {"authority": "marketo"},
                    "unsubscribed": {"direction": "to_dynamics"},
                    "leadSource": None,
                    "industry": {"dynamics": "new_industry", "kind": "string"},
                }
            }
        )
    )
    assert field_map.by_marketo("contact", "title") == FieldRule("title", "jobtitle", "string", authority="marketo")
    assert field_map.by_marketo("contact", "unsubscribed") == FieldRule(
        "unsubscribed", "donotbulkemail", "boolean", direction="to_dynamics"
    )
    assert field_map.by_marketo("contact", "leadSource") is None
    assert field_map.by_marketo("contact", "industry") == FieldRule("industry", "new_industry", "string")
    assert field_map.lead == DEFAULT_FIELD_MAP.lead


def test_override_can_reset_authority_to_entity_default() -> None:
    base = FieldMap(lead=(FieldRule("title", "jobtitle", "string", authority="dynamics"),), contact=())
    assert parse_field_map({"lead": {"title": {"authority": None}}}, base).lead[0].authority is None


ERROR_CASES: list[tuple[str, Any, str]] = [
    ("not-json", "{lead:", r"field_map: not valid JSON"),
    ("not-object", ["lead"], r"field_map: expected an object"),
    ("unknown-entity", {"account": []}, r"field_map: unknown entity 'account'"),
    ("entity-wrong-type", {"lead": "email"}, r"field_map\.lead: expected a list of rules or an object"),
    ("rule-not-object", {"lead": ["email"]}, r"field_map\.lead\[0\]: expected an object"),
    (
        "rule-missing-kind",
        {"lead": [{"marketo": "email", "dynamics": "emailaddress1"}]},
        r"field_map\.lead\[0\]\.kind: required",
    ),
    (
        "rule-missing-dynamics",
        {"contact": [{"marketo": "email", "kind": "email"}]},
        r"field_map\.contact\[0\]\.dynamics: required",
    ),
    (
        "rule-bad-kind",
        {"lead": [{"marketo": "a", "dynamics": "b", "kind": "strng"}]},
        r"field_map\.lead\[0\]\.kind: 'strng' is not one of",
    ),
    (
        "rule-bad-direction",
        {
            "lead": [
                {"marketo": "a", "dynamics": "b", "kind": "string"},
                {"marketo": "c", "dynamics": "d", "kind": "string", "direction": "up"},
            ]
        },
        r"field_map\.lead\[1\]\.direction: 'up' is not one of",
    ),
    (
        "rule-bad-authority",
        {"lead": [{"marketo": "a", "dynamics": "b", "kind": "string", "authority": "sales"}]},
        r"field_map\.lead\[0\]\.authority: 'sales' is not marketo, dynamics or null",
    ),
    (
        "rule-unknown-key",
        {"lead": [{"marketo": "a", "dynamics": "b", "kind": "string", "writable": True}]},
        r"field_map\.lead\[0\]\.writable: unknown key",
    ),
    (
        "rule-empty-name",
        {"lead": [{"marketo": " ", "dynamics": "b", "kind": "string"}]},
        r"field_map\.lead\[0\]\.marketo: expected a non-empty string",
    ),
    (
        "rule-name-not-text",
        {"lead": [{"marketo": "a", "dynamics": 5, "kind": "string"}]},
        r"field_map\.lead\[0\]\.dynamics: expected a non-empty string",
    ),
    (
        "duplicate-marketo",
        {
            "lead": [
                {"marketo": "a", "dynamics": "b", "kind": "string"},
                {"marketo": "a", "dynamics": "c", "kind": "string"},
            ]
        },
        r"field_map\.lead\[1\]\.marketo: 'a' is already mapped by \[0\]",
    ),
    (
        "duplicate-dynamics",
        {
            "contact": [
                {"marketo": "a", "dynamics": "b", "kind": "string"},
                {"marketo": "c", "dynamics": "b", "kind": "string"},
            ]
        },
        r"field_map\.contact\[1\]\.dynamics: 'b' is already mapped by \[0\]",
    ),
    ("override-not-object", {"lead": {"title": "x"}}, r"field_map\.lead\.title: expected an object or null"),
    (
        "override-bad-direction",
        {"contact": {"title": {"direction": "sideways"}}},
        r"field_map\.contact\.title\.direction: 'sideways' is not one of",
    ),
    ("override-unknown-key", {"lead": {"title": {"marketo": "x"}}}, r"field_map\.lead\.title\.marketo: unknown key"),
    (
        "override-new-field-needs-kind",
        {"lead": {"industry": {"dynamics": "new_industry"}}},
        r"field_map\.lead\.industry\.kind: required for a field the default map lacks",
    ),
    ("override-remove-unknown", {"lead": {"industry": None}}, r"field_map\.lead\.industry: cannot remove"),
]


@pytest.mark.parametrize(("value", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_malformed_setting_names_entity_index_and_key(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_field_map(value)


def test_rule_checks_its_own_values() -> None:
    with pytest.raises(ValueError, match="kind 'nope'"):
        FieldRule("a", "b", "nope")  # type: ignore[arg-type]


MARKETO_FIELDS = {
    "email": "email",
    "firstName": "string",
    "lastName": "string",
    "title": "string",
    "phone": "phone",
    "mobilePhone": "phone",
    "website": "url",
    "address": "text",
    "city": "string",
    "state": "string",
    "postalCode": "string",
    "country": "string",
    "leadSource": "string",
    "unsubscribed": "boolean",
    "company": "string",
    "leadScore": "integer",
    "dateOfBirth": "date",
}
COLUMNS = {
    "emailaddress1": "String",
    "firstname": "String",
    "lastname": "String",
    "jobtitle": "String",
    "telephone1": "String",
    "mobilephone": "String",
    "websiteurl": "String",
    "address1_line1": "String",
    "address1_city": "String",
    "address1_stateorprovince": "String",
    "address1_postalcode": "String",
    "address1_country": "String",
    "leadsourcecode": "Picklist",
    "donotbulkemail": "Boolean",
}
DYNAMICS_COLUMNS = {"lead": {**COLUMNS, "companyname": "String"}, "contact": COLUMNS}


def test_default_map_fits_the_standard_metadata() -> None:
    assert validate_field_map(DEFAULT_FIELD_MAP, MARKETO_FIELDS, DYNAMICS_COLUMNS) == []


def one_rule(rule: FieldRule) -> FieldMap:
    return FieldMap(lead=(rule,), contact=())


VALIDATE_CASES = [
    (
        "unknown-marketo-field",
        FieldRule("favouriteColour", "firstname", "string"),
        "Marketo has no field 'favouriteColour'",
    ),
    (
        "unknown-dynamics-column",
        FieldRule("firstName", "new_nickname", "string"),
        "the Dynamics lead table has no column 'new_nickname'",
    ),
    (
        "kind-vs-marketo-type",
        FieldRule("leadScore", "firstname", "string"),
        "kind string does not fit Marketo type 'integer'",
    ),
    (
        "kind-vs-dynamics-type",
        FieldRule("unsubscribed", "firstname", "boolean"),
        "kind boolean does not fit Dynamics type 'String'",
    ),
    (
        "option-needs-picklist",
        FieldRule("leadSource", "jobtitle", "option"),
        "kind option does not fit Dynamics type 'String'",
    ),
    ("date-needs-date", FieldRule("dateOfBirth", "firstname", "date"), "does not fit Dynamics type"),
    ("dot-in-marketo-name", FieldRule("a.b", "firstname", "string"), "Marketo field 'a.b' contains a dot"),
    ("dot-in-dynamics-name", FieldRule("firstName", "x.y", "string"), "Dynamics column 'x.y' contains a dot"),
]


@pytest.mark.parametrize(("rule", "problem"), [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES])
def test_validate_reports_problems_in_plain_words(rule: FieldRule, problem: str) -> None:
    problems = validate_field_map(one_rule(rule), MARKETO_FIELDS, DYNAMICS_COLUMNS)
    assert any(problem in line for line in problems), problems
    assert all(line.startswith("field_map.lead[0]") for line in problems)


@pytest.mark.parametrize(
    ("kind", "marketo_type", "column_type"),
    [
        ("number", "currency", "MoneyType"),
        ("integer", "integer", "BigInt"),
        ("text", "textarea", "Memo"),
        ("datetime", "datetime", "DateTime"),
        ("option", "string", "Status"),
    ],
    ids=["money-type-name", "bigint", "memo", "datetime", "status"],
)
def test_validate_accepts_compatible_types(kind: str, marketo_type: str, column_type: str) -> None:
    field_map = one_rule(FieldRule("custom", "new_custom", kind))  # type: ignore[arg-type]
    assert validate_field_map(field_map, {"custom": marketo_type}, {"lead": {"new_custom": column_type}}) == []


def test_validate_skips_entities_without_dynamics_metadata() -> None:
    assert validate_field_map(DEFAULT_FIELD_MAP, MARKETO_FIELDS, {"lead": DYNAMICS_COLUMNS["lead"]}) == []
