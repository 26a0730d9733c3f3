"""Pre-write validation: each rule passes and fails at its boundary, and agrees with the sandboxed APIs.

The table-driven cases use metadata shaped like the real lead/contact columns (reference §2.4) and Marketo's
describe (reference §5.1). The sandbox tests check the promise that matters: whatever we accept the API
accepts, whatever the API rejects we reject first, and what the API would silently ignore we flag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from mktdyn_sandbox.sandbox import Sandbox
from tap_dynamics_leads.client import DataverseClient
from tap_dynamics_leads.connection import DataverseConnection
from tap_dynamics_leads.errors import DataverseApiError
from tap_dynamics_leads.metadata import AttributeMetadata, OptionValue
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MarketoConnection
from tap_marketo_leads.schema import FieldInfo, fields_from_describe
from target_mktdyn_merge.core.dynamics_validation import DynamicsValidator
from target_mktdyn_merge.core.marketo_validation import MarketoValidator
from target_mktdyn_merge.core.metadata import with_updatable
from target_mktdyn_merge.core.validation import Violation, split_valid, text_length

GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
EMOJI = "\N{GRINNING FACE}"  # outside the BMP: 1 code point, 2 UTF-16 units


# -- metadata fixtures ----------------------------------------------------------------------------------
def string(name: str, length: int, level: str = "None") -> AttributeMetadata:
    return AttributeMetadata(
        name,
        "String",
        "StringType",
        required_level=level,
        valid_for_create=True,
        valid_for_update=True,
        max_length=length,
    )


def column(name: str, kind: str, **extra: Any) -> AttributeMetadata:
    values: dict[str, Any] = {"type_name": f"{kind}Type", "valid_for_create": True, "valid_for_update": True, **extra}
    return AttributeMetadata(name, kind, **values)


LEAD_STATES = (
    OptionValue(0, "Open", default_status=1),
    OptionValue(1, "Qualified", default_status=3),
    OptionValue(2, "Disqualified", default_status=4),
)
LEAD_REASONS = (
    OptionValue(1, "New", state=0),
    OptionValue(2, "Contacted", state=0),
    OptionValue(3, "Qualified", state=1),
    OptionValue(4, "Lost", state=2),
    OptionValue(5, "Cannot Contact", state=2),
    OptionValue(6, "No Longer Interested", state=2),
    OptionValue(7, "Canceled", state=2),
)
SOURCES = tuple(OptionValue(value, f"Source {value}") for value in range(1, 11))

LEAD = [
    column("leadid", "Uniqueidentifier", required_level="SystemRequired", valid_for_update=False),
    string("subject", 300, "ApplicationRequired"),
    string("firstname", 50, "Recommended"),
    string("lastname", 50, "ApplicationRequired"),
    string("emailaddress1", 100),
    column("description", "Memo", max_length=2000),
    column("leadsourcecode", "Picklist", options=SOURCES, display_name="Lead Source"),
    column("statecode", "State", required_level="SystemRequired", valid_for_create=False, options=LEAD_STATES),
    column("statuscode", "Status", options=LEAD_REASONS),
    column("donotbulkemail", "Boolean", options=(OptionValue(0, "Allow"), OptionValue(1, "Do Not Allow"))),
    column("createdon", "DateTime", datetime_behavior="UserLocal", valid_for_create=False, valid_for_update=False),
    column("new_lastsyncedon", "DateTime", datetime_behavior="UserLocal"),
    column("new_lastcontacteddate", "DateTime", datetime_behavior="DateOnly"),
    column("numberofemployees", "Integer", min_value=0, max_value=1_000_000),
    column("new_visits", "Integer"),  # no Min/Max in metadata: Int32's range applies
    column("budgetamount", "Money", min_value=0, max_value=1_000_000_000, precision=2),
    column("parentcontactid", "Lookup", targets=("contact",)),
    column("customerid", "Customer", targets=("account", "contact")),
    column("ownerid", "Owner", required_level="SystemRequired", targets=("systemuser", "team")),
    column("new_interests", "Virtual", type_name="MultiSelectPicklistType", options=SOURCES[:3]),
    AttributeMetadata("leadsourcecodename", "Virtual", "VirtualType", attribute_of="leadsourcecode"),
]
CONTACT = [
    column("contactid", "Uniqueidentifier", required_level="SystemRequired", valid_for_update=False),
    string("firstname", 50, "Recommended"),
    string("lastname", 50, "ApplicationRequired"),
    string("emailaddress1", 100),
    column(
        "statecode",
        "State",
        required_level="SystemRequired",
        valid_for_create=False,
        options=(OptionValue(0, "Active", default_status=1), OptionValue(1, "Inactive", default_status=2)),
    ),
    column("statuscode", "Status", options=(OptionValue(1, "Active", state=0), OptionValue(2, "Inactive", state=1))),
    column("parentcustomerid", "Customer", targets=("account", "contact")),
    column("birthdate", "DateTime", datetime_behavior="DateOnly"),
]
ATTRIBUTES = {
    "lead": {a.logical_name: a for a in LEAD},
    "contact": {a.logical_name: a for a in CONTACT},
}
LEAD_CREATE_BASE = {"subject": "Webinar signup", "lastname": "Lovelace"}


def rules(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in violations}


# -- Dynamics: one rule at a time, at its boundary --------------------------------------------------------
# (field, value, expected (field, rule) pairs or [] when valid); each is sent as a lead create with the
# ApplicationRequired columns filled in, so only the case's own rule can fail.
LEAD_CREATE_CASES: list[Any] = [
    pytest.param("firstname", "x" * 50, [], id="maxlength-50-ok"),
    pytest.param("firstname", "x" * 51, [("firstname", "max_length")], id="maxlength-51-fails"),
    pytest.param("firstname", "é" * 50, [], id="maxlength-unicode-bmp-50-ok"),
    pytest.param("firstname", "é" * 51, [("firstname", "max_length")], id="maxlength-unicode-bmp-51-fails"),
    pytest.param("firstname", "e\u0301" * 25, [], id="maxlength-combining-marks-count-each"),
    pytest.param("firstname", EMOJI * 25, [], id="maxlength-emoji-50-units-ok"),
    pytest.param("firstname", "x" * 49 + EMOJI, [("firstname", "max_length")], id="maxlength-emoji-51-units-fails"),
    pytest.param("subject", "s" * 300, [], id="subject-300-ok"),
    pytest.param("subject", "s" * 301, [("subject", "max_length")], id="subject-301-fails"),
    pytest.param("emailaddress1", "a" * 88 + "@example.com", [], id="email-100-ok"),
    pytest.param("emailaddress1", "a" * 89 + "@example.com", [("emailaddress1", "max_length")], id="email-101-fails"),
    pytest.param("emailaddress1", "not an email", [], id="email-format-is-display-only"),
    pytest.param("description", "d" * 2000, [], id="memo-2000-ok"),
    pytest.param("description", "d" * 2001, [("description", "max_length")], id="memo-2001-fails"),
    pytest.param("firstname", 42, [("firstname", "type")], id="string-given-number"),
    pytest.param("firstname", None, [], id="string-null-clears"),
    pytest.param("leadsourcecode", 1, [], id="option-1-ok"),
    pytest.param("leadsourcecode", 10, [], id="option-10-ok"),
    pytest.param("leadsourcecode", 0, [("leadsourcecode", "option_value")], id="option-0-fails"),
    pytest.param("leadsourcecode", 11, [("leadsourcecode", "option_value")], id="option-11-fails"),
    pytest.param("leadsourcecode", 99, [("leadsourcecode", "option_value")], id="option-99-fails"),
    pytest.param("leadsourcecode", "8", [("leadsourcecode", "option_value")], id="option-as-text-is-not-an-option"),
    pytest.param("leadsourcecode", True, [("leadsourcecode", "type")], id="option-bool-is-not-int"),
    pytest.param("leadsourcecode", None, [], id="option-null-ok"),
    pytest.param("donotbulkemail", True, [], id="boolean-true-ok"),
    pytest.param("donotbulkemail", False, [], id="boolean-false-ok"),
    pytest.param("donotbulkemail", 1, [("donotbulkemail", "type")], id="boolean-option-value-1-fails"),
    pytest.param("donotbulkemail", "true", [("donotbulkemail", "type")], id="boolean-text-fails"),
    pytest.param("numberofemployees", 0, [], id="integer-min-ok"),
    pytest.param("numberofemployees", 1_000_000, [], id="integer-max-ok"),
    pytest.param("numberofemployees", -1, [("numberofemployees", "minimum")], id="integer-below-min"),
    pytest.param("numberofemployees", 1_000_001, [("numberofemployees", "maximum")], id="integer-above-max"),
    pytest.param("numberofemployees", 5.0, [("numberofemployees", "type")], id="integer-float-5.0-fails"),
    pytest.param("numberofemployees", True, [("numberofemployees", "type")], id="integer-bool-fails"),
    pytest.param("new_visits", 2**31 - 1, [], id="integer-int32-max-ok"),
    pytest.param("new_visits", 2**31, [("new_visits", "maximum")], id="integer-int32-overflow"),
    pytest.param("budgetamount", 12.34, [], id="money-decimal-ok"),
    pytest.param("budgetamount", 1_000_000_000, [], id="money-max-ok"),
    pytest.param("budgetamount", -0.01, [("budgetamount", "minimum")], id="money-below-min"),
    pytest.param("budgetamount", 1_000_000_000.01, [("budgetamount", "maximum")], id="money-above-max"),
    pytest.param("budgetamount", "12.34", [("budgetamount", "type")], id="money-text-fails"),
    pytest.param("budgetamount", float("nan"), [("budgetamount", "type")], id="money-nan-fails"),
    pytest.param("new_lastcontacteddate", "2024-01-05", [], id="dateonly-ok"),
    pytest.param("new_lastcontacteddate", "1753-01-01", [], id="dateonly-1753-01-01-ok"),
    pytest.param("new_lastcontacteddate", "1752-12-31", [("new_lastcontacteddate", "date_range")], id="dateonly-1752"),
    pytest.param(
        "new_lastcontacteddate", "2024-02-30", [("new_lastcontacteddate", "format")], id="dateonly-no-such-day"
    ),
    pytest.param(
        "new_lastcontacteddate", "2024-01-05T00:00:00Z", [("new_lastcontacteddate", "format")], id="dateonly-given-time"
    ),
    pytest.param("new_lastsyncedon", "2024-01-05T17:30:00Z", [], id="datetime-utc-ok"),
    pytest.param("new_lastsyncedon", "2024-01-05T17:30:00.1234567+01:00", [], id="datetime-offset-7-digits-ok"),
    pytest.param("new_lastsyncedon", "1753-01-01T00:00:00Z", [], id="datetime-1753-ok"),
    pytest.param("new_lastsyncedon", "1752-12-31T23:59:59Z", [("new_lastsyncedon", "date_range")], id="datetime-1752"),
    pytest.param(
        "new_lastsyncedon", "1753-01-01T00:30:00+01:00", [("new_lastsyncedon", "date_range")], id="datetime-1752-in-utc"
    ),
    pytest.param("new_lastsyncedon", "2024-01-05", [("new_lastsyncedon", "format")], id="datetime-given-date"),
    pytest.param("new_lastsyncedon", "2024-01-05T17:30:00", [("new_lastsyncedon", "format")], id="datetime-no-offset"),
    pytest.param(
        "new_lastsyncedon", "2024-01-05T17:30:00+0100", [("new_lastsyncedon", "format")], id="datetime-basic-tz"
    ),
    pytest.param("new_lastsyncedon", "yesterday", [("new_lastsyncedon", "format")], id="datetime-prose"),
    pytest.param("leadid", GUID, [], id="uniqueidentifier-on-create-ok"),
    pytest.param("leadid", "lead-1", [("leadid", "format")], id="uniqueidentifier-not-a-guid"),
    pytest.param("leadid", None, [("leadid", "required")], id="systemrequired-null-fails"),
    pytest.param("createdon", "2020-01-01T00:00:00Z", [("createdon", "not_writable")], id="createdon-not-creatable"),
    pytest.param("statecode", 1, [("statecode", "not_writable")], id="statecode-not-creatable"),
    pytest.param("favouritecolour", "blue", [("favouritecolour", "unknown_field")], id="unknown-column"),
    pytest.param("leadsourcecodename", "Web", [("leadsourcecodename", "unknown_field")], id="virtual-column"),
    pytest.param("new_interests", "1,3", [], id="multiselect-ok"),
    pytest.param("new_interests", "1,9", [("new_interests", "option_value")], id="multiselect-bad-option"),
    pytest.param("parentcontactid@odata.bind", f"/contacts({GUID})", [], id="lookup-bind-ok"),
    pytest.param("parentcontactid@odata.bind", None, [], id="lookup-bind-null-clears"),
    pytest.param(
        "parentcontactid@odata.bind",
        f"/accounts({GUID})",
        [("parentcontactid@odata.bind", "format")],
        id="lookup-wrong-set",
    ),
    pytest.param(
        "parentcontactid@odata.bind", "/contacts(42)", [("parentcontactid@odata.bind", "format")], id="lookup-not-guid"
    ),
    pytest.param("parentcontactid", GUID, [("parentcontactid", "unknown_field")], id="lookup-by-value"),
    pytest.param("_parentcontactid_value", GUID, [("_parentcontactid_value", "unknown_field")], id="lookup-read-name"),
    pytest.param(
        "nosuch@odata.bind", f"/contacts({GUID})", [("nosuch@odata.bind", "unknown_field")], id="bind-unknown"
    ),
    pytest.param("customerid_account@odata.bind", f"/accounts({GUID})", [], id="customer-account-ok"),
    pytest.param("customerid_contact@odata.bind", f"/contacts({GUID})", [], id="customer-contact-ok"),
    pytest.param(
        "customerid_account@odata.bind",
        f"/contacts({GUID})",
        [("customerid_account@odata.bind", "format")],
        id="customer-target-mismatch",
    ),
    pytest.param(
        "customerid@odata.bind",
        f"/accounts({GUID})",
        [("customerid@odata.bind", "unknown_field")],
        id="customer-bare-nav",
    ),
    pytest.param("ownerid@odata.bind", f"/systemusers({GUID})", [], id="owner-user-ok"),
    pytest.param("ownerid@odata.bind", f"/teams({GUID})", [], id="owner-team-ok"),
    pytest.param("ownerid@odata.bind", None, [("ownerid@odata.bind", "required")], id="owner-systemrequired-null"),
    pytest.param("statuscode", 1, [], id="status-new-ok-for-new-row"),
    pytest.param("statuscode", 2, [], id="status-contacted-ok-for-new-row"),
    pytest.param("statuscode", 3, [("statuscode", "status_state")], id="status-qualified-fails-for-new-row"),
    pytest.param("statuscode", 99, [("statuscode", "option_value")], id="status-unknown-is-option-only"),
]


@pytest.mark.parametrize(("field", "value", "expected"), LEAD_CREATE_CASES)
def test_lead_create_rule_boundaries(field: str, value: Any, expected: list[tuple[str, str]]) -> None:
    validator = DynamicsValidator(ATTRIBUTES)
    violations = validator.validate("lead", "create", {**LEAD_CREATE_BASE, field: value})
    assert rules(violations) == set(expected), violations
    for violation in violations:
        assert violation.message.startswith(f"{violation.field}: "), violation


# (payload, current, expected) for updates, where statecode is writable and `current` matters.
LEAD_UPDATE_CASES: list[Any] = [
    pytest.param({"firstname": "Ada"}, None, [], id="plain-update-ok"),
    pytest.param({"leadid": GUID}, None, [("leadid", "not_writable")], id="primary-key-not-updatable"),
    pytest.param({"createdon": "2020-01-01T00:00:00Z"}, None, [("createdon", "not_writable")], id="createdon"),
    pytest.param({"subject": None}, None, [], id="application-required-may-be-blanked-under-create-policy"),
    pytest.param({"statecode": None}, None, [("statecode", "required")], id="systemrequired-state-null"),
    pytest.param({"statecode": 1, "statuscode": 3}, None, [], id="state-and-matching-status"),
    pytest.param({"statecode": 0, "statuscode": 3}, None, [("statuscode", "status_state")], id="status-3-state-0"),
    pytest.param({"statecode": 1, "statuscode": 4}, None, [("statuscode", "status_state")], id="status-4-state-1"),
    pytest.param({"statecode": 2}, None, [], id="state-alone-takes-default-status"),
    pytest.param({"statuscode": 3}, {"statecode": 0}, [("statuscode", "status_state")], id="status-vs-current-state"),
    pytest.param({"statuscode": 3}, {"statecode": 1}, [], id="status-matches-current-state"),
    pytest.param({"statuscode": 2}, {"statecode": 0, "statuscode": 1}, [], id="status-within-current-state"),
    pytest.param({"statecode": 0, "statuscode": 2}, {"statecode": 1}, [], id="payload-state-beats-current"),
    pytest.param({"statuscode": 3}, None, [], id="status-without-known-state-is-not-guessed"),
    pytest.param({"statuscode": None}, {"statecode": 1}, [], id="status-null-takes-default"),
]


@pytest.mark.parametrize(("payload", "current", "expected"), LEAD_UPDATE_CASES)
def test_lead_update_rules(
    payload: dict[str, Any], current: dict[str, Any] | None, expected: list[tuple[str, str]]
) -> None:
    violations = DynamicsValidator(ATTRIBUTES).validate("lead", "update", payload, current)
    assert rules(violations) == set(expected), violations


# (entity, operation, policy, payload, expected) for the ApplicationRequired policy.
REQUIRED_CASES: list[Any] = [
    pytest.param("lead", "create", "create", {"lastname": "L"}, [("subject", "required")], id="create-missing-subject"),
    pytest.param(
        "lead", "create", "create", {"subject": "S"}, [("lastname", "required")], id="create-missing-lastname"
    ),
    pytest.param(
        "lead", "create", "create", {}, [("subject", "required"), ("lastname", "required")], id="create-missing-both"
    ),
    pytest.param(
        "lead",
        "create",
        "create",
        {"subject": "  ", "lastname": None},
        [("subject", "required"), ("lastname", "required")],
        id="create-blank-and-null",
    ),
    pytest.param("lead", "create", "none", {}, [], id="policy-none-create-passes"),
    pytest.param("lead", "create", "none", {"subject": "", "lastname": None}, [], id="policy-none-blank-passes"),
    pytest.param(
        "lead", "create", "always", {}, [("subject", "required"), ("lastname", "required")], id="always-create"
    ),
    pytest.param("lead", "update", "create", {"lastname": ""}, [], id="policy-create-update-may-blank"),
    pytest.param("lead", "update", "always", {"lastname": ""}, [("lastname", "required")], id="always-update-blank"),
    pytest.param("lead", "update", "always", {"firstname": "A"}, [], id="always-update-absent-is-fine"),
    pytest.param("contact", "create", "create", {"firstname": "A"}, [("lastname", "required")], id="contact-lastname"),
    pytest.param("contact", "create", "create", {"lastname": "L"}, [], id="contact-create-ok"),
]


@pytest.mark.parametrize(("entity", "operation", "policy", "payload", "expected"), REQUIRED_CASES)
def test_required_level_policy(
    entity: str, operation: Any, policy: Any, payload: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    violations = DynamicsValidator(ATTRIBUTES, enforce_required_levels=policy).validate(entity, operation, payload)
    assert rules(violations) == set(expected), violations


CONTACT_CASES: list[Any] = [
    pytest.param({"parentcustomerid_contact@odata.bind": f"/contacts({GUID})"}, None, [], id="customer-bind-ok"),
    pytest.param({"birthdate": "1990-05-17"}, None, [], id="birthdate-dateonly-ok"),
    pytest.param({"birthdate": "1700-05-17"}, None, [("birthdate", "date_range")], id="birthdate-too-early"),
    pytest.param({"statuscode": 2}, {"statecode": 0}, [("statuscode", "status_state")], id="inactive-reason-active"),
    pytest.param({"statecode": 1, "statuscode": 2}, None, [], id="inactive-pair-ok"),
]


@pytest.mark.parametrize(("payload", "current", "expected"), CONTACT_CASES)
def test_contact_update_rules(
    payload: dict[str, Any], current: dict[str, Any] | None, expected: list[tuple[str, str]]
) -> None:
    violations = DynamicsValidator(ATTRIBUTES).validate("contact", "update", payload, current)
    assert rules(violations) == set(expected), violations


def test_every_violation_of_a_payload_is_reported_in_payload_order() -> None:
    payload = {
        "firstname": "x" * 51,
        "leadsourcecode": 99,
        "createdon": "2020-01-01T00:00:00Z",
        "favouritecolour": "blue",
        "statuscode": 3,
        "donotbulkemail": "yes",
    }
    violations = DynamicsValidator(ATTRIBUTES).validate("lead", "create", payload)
    assert [(v.field, v.rule) for v in violations] == [
        ("firstname", "max_length"),
        ("leadsourcecode", "option_value"),
        ("createdon", "not_writable"),
        ("favouritecolour", "unknown_field"),
        ("statuscode", "status_state"),
        ("donotbulkemail", "type"),
        ("lastname", "required"),
        ("subject", "required"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param(
            "firstname", "x" * 61, "firstname: 61 characters, Dynamics allows at most 50 (MaxLength)", id="len"
        ),
        pytest.param(
            "firstname",
            EMOJI * 26,
            "firstname: 26 characters (52 UTF-16 units), Dynamics allows at most 50 (MaxLength)",
            id="len-utf16",
        ),
        pytest.param(
            "leadsourcecode",
            99,
            "leadsourcecode: 99 is not an option of Lead Source (options: 1 Source 1, 2 Source 2, 3 Source 3, "
            "4 Source 4, 5 Source 5, 6 Source 6, 7 Source 7, 8 Source 8, 9 Source 9, 10 Source 10)",
            id="option",
        ),
        pytest.param(
            "numberofemployees",
            1_000_001,
            "numberofemployees: 1000001 is above the maximum 1000000 (MaxValue)",
            id="max",
        ),
        pytest.param("donotbulkemail", 1, "donotbulkemail: expected true or false, got 1 (integer)", id="boolean"),
        pytest.param(
            "statuscode",
            3,
            "statuscode: 3 (Qualified) belongs to statecode 1 (Qualified), but statecode is 0 (Open) for a new row",
            id="status",
        ),
    ],
)
def test_messages_name_field_value_and_limit(field: str, value: Any, message: str) -> None:
    violations = DynamicsValidator(ATTRIBUTES).validate("lead", "create", {**LEAD_CREATE_BASE, field: value})
    assert [v.message for v in violations] == [message]


def test_long_values_are_shortened_in_messages() -> None:
    payload = {**LEAD_CREATE_BASE, "createdon": "x" * 500}
    [violation] = DynamicsValidator(ATTRIBUTES).validate("lead", "create", payload)
    assert len(violation.message) < 200
    assert "…" in violation.message


def test_schema_is_draft_2020_12_closed_and_compiled_once_per_table_and_operation() -> None:
    validator = DynamicsValidator(ATTRIBUTES)
    create = validator.schema("lead", "create")
    assert create is validator.schema("lead", "create")
    assert create is not validator.schema("lead", "update")
    assert create["$schema"].endswith("2020-12/schema")
    assert create["additionalProperties"] is False
    assert create["properties"]["firstname"] == {"type": ["string", "null"], "maxLength": 50}
    assert create["properties"]["leadsourcecode"]["enum"] == [*range(1, 11), None]
    assert create["required"] == ["subject", "lastname"]
    assert r"^customerid_account@odata\.bind$" in create["patternProperties"]
    json.dumps(create)  # plain JSON, so it can be logged or published
    assert "required" not in validator.schema("lead", "update")


def test_misuse_is_an_error_not_a_violation() -> None:
    with pytest.raises(ValueError, match="enforce_required_levels"):
        DynamicsValidator(ATTRIBUTES, enforce_required_levels="sometimes")  # type: ignore[arg-type]
    validator = DynamicsValidator(ATTRIBUTES)
    with pytest.raises(ValueError, match="operation"):
        validator.validate("lead", "upsert", {})  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="account"):
        validator.validate("account", "create", {})
    assert rules(validator.validate("lead", "create", ["not", "an", "object"])) == {("", "type")}  # type: ignore[arg-type]


def test_text_length_counts_utf16_units() -> None:
    assert text_length("abc") == 3
    assert text_length("é") == 1
    assert text_length(EMOJI) == 2


# -- split_valid --------------------------------------------------------------------------------------------
def test_split_valid_holds_back_only_the_rejected_fields() -> None:
    payload = {"firstname": "x" * 51, "lastname": "Lovelace", "statecode": 0, "statuscode": 3, "jobtitle": "CTO"}
    violations = [
        Violation("firstname", "max_length", "..."),
        Violation("statuscode", "status_state", "..."),
        Violation("subject", "required", "..."),
    ]
    valid, rejected = split_valid(payload, violations)
    assert valid == {"lastname": "Lovelace", "jobtitle": "CTO"}
    assert rejected == ("firstname", "statuscode", "statecode", "subject")
    assert split_valid(payload, []) == (payload, ())


# -- Marketo ------------------------------------------------------------------------------------------------
def info(
    name: str, data_type: str, length: int | None = None, read_only: bool = False, company: bool = False
) -> FieldInfo:
    """A describe field; ``company`` ones are not ``updateable`` in describe2 (no longer a hard-coded list)."""
    return FieldInfo(name, data_type, read_only, length, name, updatable=not (read_only or company))


MARKETO_FIELDS = {
    f.name: f
    for f in (
        info("id", "integer"),
        info("email", "email", 255),
        info("firstName", "string", 255),
        info("lastName", "string", 255),
        info("company", "string", 255, company=True),
        info("annualRevenue", "currency", company=True),
        info("numberOfEmployees", "integer", company=True),
        info("leadScore", "integer"),
        info("urgency", "float"),
        info("dateOfBirth", "date"),
        info("emailSuspendedAt", "datetime"),
        info("unsubscribed", "boolean"),
        info("leadPartitionId", "reference"),
        info("mktoPersonNotes", "text"),
        info("createdAt", "datetime", read_only=True),
        info("personTimeZone", "string", 255, read_only=True),
        info("dynamicsLeadId", "string", 36),
    )
}

MARKETO_CASES: list[Any] = [
    pytest.param("create", {"email": "ada@example.com"}, [], id="create-ok"),
    pytest.param("create", {"firstName": "Ada"}, [("email", "required")], id="create-needs-email"),
    pytest.param("create", {"email": ""}, [("email", "required")], id="create-blank-email"),
    pytest.param("create", {"email": None}, [("email", "required")], id="create-null-email"),
    pytest.param("create", {"email": "a@example.com", "id": 5}, [("id", "not_writable")], id="create-with-id"),
    pytest.param("update", {"id": 5}, [], id="update-ok"),
    pytest.param("update", {"email": "a@example.com"}, [("id", "required")], id="update-needs-id"),
    pytest.param("update", {"id": "5"}, [("id", "type")], id="update-id-as-text"),
    pytest.param("update", {"id": True}, [("id", "type")], id="update-id-bool"),
    pytest.param("update", {"id": 0}, [("id", "type")], id="update-id-zero"),
    pytest.param("update", {"id": 5, "email": "ada.lovelace+x@example.com"}, [], id="ascii-email-ok"),
    pytest.param("update", {"id": 5, "email": "josé@example.com"}, [("email", "ascii_email")], id="non-ascii-local"),
    pytest.param("update", {"id": 5, "email": "ada@bücher.de"}, [("email", "ascii_email")], id="non-ascii-domain"),
    pytest.param("update", {"id": 5, "email": "ada.example.com"}, [("email", "email_format")], id="email-without-at"),
    pytest.param("update", {"id": 5, "email": None}, [], id="update-may-clear-email"),
    pytest.param("update", {"id": 5, "dynamicsLeadId": "d" * 36}, [], id="length-36-ok"),
    pytest.param("update", {"id": 5, "dynamicsLeadId": "d" * 37}, [("dynamicsLeadId", "max_length")], id="length-37"),
    pytest.param("update", {"id": 5, "firstName": "é" * 255}, [], id="length-unicode-255-ok"),
    pytest.param("update", {"id": 5, "firstName": "é" * 256}, [("firstName", "max_length")], id="length-unicode-256"),
    pytest.param("update", {"id": 5, "firstName": 42}, [("firstName", "type")], id="string-given-number"),
    pytest.param("update", {"id": 5, "mktoPersonNotes": "n" * 5000}, [], id="text-without-length"),
    pytest.param("update", {"id": 5, "favouriteColour": "blue"}, [("favouriteColour", "unknown_field")], id="unknown"),
    pytest.param("update", {"id": 5, "createdAt": "2024-01-05T00:00:00Z"}, [("createdAt", "read_only")], id="ro-upd"),
    pytest.param(
        "create", {"email": "a@b.co", "personTimeZone": "UTC"}, [("personTimeZone", "read_only")], id="ro-new"
    ),
    pytest.param("update", {"id": 5, "company": "Acme"}, [("company", "not_writable")], id="company-on-update"),
    pytest.param("update", {"id": 5, "annualRevenue": 10.5}, [("annualRevenue", "not_writable")], id="company-revenue"),
    pytest.param("create", {"email": "a@b.co", "company": "Acme", "numberOfEmployees": 5}, [], id="company-on-create"),
    pytest.param("update", {"id": 5, "leadScore": 10}, [], id="integer-ok"),
    pytest.param("update", {"id": 5, "leadScore": "10"}, [("leadScore", "type")], id="integer-text"),
    pytest.param("update", {"id": 5, "leadScore": 1.5}, [("leadScore", "type")], id="integer-float"),
    pytest.param("update", {"id": 5, "leadScore": False}, [("leadScore", "type")], id="integer-bool"),
    pytest.param("update", {"id": 5, "urgency": 1.5}, [], id="float-ok"),
    pytest.param("update", {"id": 5, "urgency": 2}, [], id="float-int-ok"),
    pytest.param("update", {"id": 5, "urgency": "1.5"}, [("urgency", "type")], id="float-text"),
    pytest.param("update", {"id": 5, "dateOfBirth": "1990-05-17"}, [], id="date-ok"),
    pytest.param("update", {"id": 5, "dateOfBirth": "1990-5-17"}, [("dateOfBirth", "type")], id="date-unpadded"),
    pytest.param("update", {"id": 5, "dateOfBirth": "1990-02-30"}, [("dateOfBirth", "type")], id="date-no-such-day"),
    pytest.param("update", {"id": 5, "emailSuspendedAt": "2024-01-05T17:30:00Z"}, [], id="datetime-ok"),
    pytest.param("update", {"id": 5, "emailSuspendedAt": "2024-01-05T17:30:00+0000"}, [], id="datetime-basic-offset"),
    pytest.param("update", {"id": 5, "emailSuspendedAt": "2024-01-05"}, [("emailSuspendedAt", "type")], id="dt-date"),
    pytest.param("update", {"id": 5, "unsubscribed": True}, [], id="boolean-ok"),
    pytest.param("update", {"id": 5, "unsubscribed": "true"}, [("unsubscribed", "type")], id="boolean-text"),
    pytest.param("update", {"id": 5, "leadPartitionId": 1}, [], id="reference-int-ok"),
    pytest.param("update", {"id": 5, "leadPartitionId": "1"}, [], id="reference-digits-ok"),
    pytest.param("update", {"id": 5, "leadPartitionId": "one"}, [("leadPartitionId", "type")], id="reference-word"),
    pytest.param("update", {"id": 5, "firstName": None, "leadScore": None}, [], id="null-clears"),
    pytest.param(
        "update",
        {"id": 5, "email": "josé@example.com", "company": "Acme", "createdAt": "x", "leadScore": "x", "zz": 1},
        [
            ("email", "ascii_email"),
            ("company", "not_writable"),
            ("createdAt", "read_only"),
            ("leadScore", "type"),
            ("zz", "unknown_field"),
        ],
        id="several-at-once",
    ),
]


@pytest.mark.parametrize(("operation", "payload", "expected"), MARKETO_CASES)
def test_marketo_rules(operation: Any, payload: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    violations = MarketoValidator(MARKETO_FIELDS).validate(operation, payload)
    assert rules(violations) == set(expected), violations
    for violation in violations:
        assert violation.message.startswith(f"{violation.field}: "), violation


def test_marketo_messages() -> None:
    validator = MarketoValidator(MARKETO_FIELDS)
    [length] = validator.validate("update", {"id": 1, "dynamicsLeadId": "d" * 40})
    assert length.message == "dynamicsLeadId: 40 characters, Marketo allows at most 36 (length)"
    [email] = validator.validate("update", {"id": 1, "email": "josé@example.com"})
    assert email.message == "email: 'josé@example.com' has non-ASCII characters; Marketo emails must be ASCII"
    with pytest.raises(ValueError, match="operation"):
        validator.validate("upsert", {})  # type: ignore[arg-type]


# -- agreement with the sandboxed APIs ----------------------------------------------------------------------
@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(persons=10, dynamics_only=4, overlap=0.5)


@pytest.fixture
def dataverse(sandbox: Sandbox) -> Iterator[DataverseClient]:
    info = sandbox.info
    config = {
        "base_url": info["dynamics_url"],
        "authority_host": info["dynamics_authority"],
        "tenant_id": info["dynamics_tenant_id"],
        "client_id": info["dynamics_client_id"],
        "client_secret": info["dynamics_client_secret"],
        "ca_bundle": info["ca_bundle"],
    }
    with DataverseClient(DataverseConnection.from_config(config)) as client:
        yield client


def test_dynamics_validator_agrees_with_the_sandbox(dataverse: DataverseClient) -> None:
    attributes = {entity: {a.logical_name: a for a in dataverse.attributes(entity)} for entity in ("lead", "contact")}
    validator = DynamicsValidator(attributes)
    contact = next(dataverse.query("contacts", ["contactid"], page_size=1))
    base = {"subject": "Webinar", "lastname": "Lovelace"}
    accepted: list[dict[str, Any]] = [
        {**base, "firstname": "x" * 50, "leadsourcecode": 10, "donotbulkemail": True, "statuscode": 2},
        {**base, "lastname": "é" * 50, "emailaddress1": "ada@example.com", "new_lastcontacteddate": "1753-01-01"},
        {**base, "parentcontactid@odata.bind": f"/contacts({contact['contactid']})", "new_synctomkto": False},
    ]
    for payload in accepted:
        assert validator.validate("lead", "create", payload) == [], payload
        assert dataverse.create("leads", payload, ["leadid"])["leadid"]
    rejected: dict[str, dict[str, Any]] = {
        "max_length": {**base, "firstname": "x" * 51},
        "option_value": {**base, "leadsourcecode": 99},
        "status_state": {**base, "statuscode": 3},
        "date_range": {**base, "new_lastcontacteddate": "1752-12-31"},
        "type": {**base, "donotbulkemail": 1},
        "unknown_field": {**base, "favouritecolour": "blue"},
    }
    for rule, payload in rejected.items():
        assert rule in {v.rule for v in validator.validate("lead", "create", payload)}, rule
        with pytest.raises(DataverseApiError) as refused:
            dataverse.create("leads", payload)
        assert refused.value.status == 400, rule


def test_dynamics_flags_what_the_sandbox_silently_ignores(dataverse: DataverseClient) -> None:
    attributes = {"lead": {a.logical_name: a for a in dataverse.attributes("lead")}}
    validator = DynamicsValidator(attributes)
    created = dataverse.create("leads", {"subject": "S", "lastname": "L"}, ["leadid", "createdon", "statecode"])
    lead_id = created["leadid"]

    ignored = {"firstname": "Grace", "createdon": "2001-01-01T00:00:00Z"}
    assert rules(validator.validate("lead", "update", ignored)) == {("createdon", "not_writable")}
    stored = dataverse.update("leads", lead_id, ignored, select=["firstname", "createdon"])
    assert stored["firstname"] == "Grace"
    assert stored["createdon"] == created["createdon"]  # accepted, and silently not written

    qualified = {"subject": "S2", "lastname": "L2", "statecode": 1}
    assert rules(validator.validate("lead", "create", qualified)) == {("statecode", "not_writable")}
    assert dataverse.create("leads", qualified, ["statecode"])["statecode"] == 0  # ignored on create

    missing = {"firstname": "Only"}  # ApplicationRequired is not enforced by the service
    assert rules(validator.validate("lead", "create", missing)) == {("subject", "required"), ("lastname", "required")}
    assert dataverse.create("leads", missing, ["leadid"])["leadid"]

    current = dataverse.get("leads", lead_id, ["statecode", "statuscode"])
    assert current is not None
    assert rules(validator.validate("lead", "update", {"statuscode": 3}, current)) == {("statuscode", "status_state")}
    with pytest.raises(DataverseApiError) as refused:
        dataverse.update("leads", lead_id, {"statuscode": 3})
    assert (refused.value.status, refused.value.code) == (400, "0x80048408")
    assert validator.validate("lead", "update", {"statecode": 2, "statuscode": 5}, current) == []
    assert (
        dataverse.update("leads", lead_id, {"statecode": 2, "statuscode": 5}, select=["statuscode"])["statuscode"] == 5
    )


@pytest.fixture
def marketo(sandbox: Sandbox) -> Iterator[MarketoClient]:
    info = sandbox.info
    config = {
        "base_url": info["marketo_url"],
        "client_id": info["marketo_client_id"],
        "client_secret": info["marketo_client_secret"],
        "ca_bundle": info["ca_bundle"],
    }
    with MarketoClient(MarketoConnection.from_config(config)) as client:
        yield client


def test_marketo_validator_agrees_with_the_sandbox(marketo: MarketoClient) -> None:
    validator = MarketoValidator(
        with_updatable(fields_from_describe(marketo.describe_leads()), marketo.describe_leads2())
    )
    accepted: list[Mapping[str, Any]] = [
        {"email": "ada.lovelace+sync@example.com", "firstName": "Zoë" + "x" * 252, "syncToDynamics": True},
        {"email": "grace@example.com", "company": "Acme", "dynamicsLeadId": GUID},
    ]
    for payload in accepted:
        assert validator.validate("create", payload) == [], payload
    outcomes = marketo.sync_leads("createOnly", accepted, "email")
    assert [o.status for o in outcomes] == ["created", "created"], outcomes
    person_id = outcomes[1].id
    assert person_id is not None

    rejected: dict[str, dict[str, Any]] = {
        "ascii_email": {"email": "josé@example.com"},
        "max_length": {"email": "long@example.com", "dynamicsLeadId": GUID + "x"},
        "unknown_field": {"email": "unknown@example.com", "favouriteColour": "blue"},
        "type": {"email": "typed@example.com", "leadScore": "a lot"},
    }
    for rule, payload in rejected.items():
        assert rule in {v.rule for v in validator.validate("create", payload)}, rule
    outcomes = marketo.sync_leads("createOnly", list(rejected.values()), "email")
    assert [o.status for o in outcomes] == ["skipped"] * len(rejected), outcomes

    ignored = {"id": person_id, "company": "Other Inc", "createdAt": "2001-01-01T00:00:00Z", "firstName": "Grace"}
    assert rules(validator.validate("update", ignored)) == {("company", "not_writable"), ("createdAt", "read_only")}
    [outcome] = marketo.sync_leads("updateOnly", [ignored], "id")
    assert outcome.status == "updated"
    [stored] = marketo.get_leads("id", [person_id], ["company", "createdAt", "firstName"])
    assert stored["firstName"] == "Grace"
    assert stored["company"] == "Acme"  # silently not written
    assert stored["createdAt"] != "2001-01-01T00:00:00Z"


SHORT_SOURCES = (OptionValue(2, "Employee Referral"), OptionValue(1, "Advertisement"))
LABELLED = {
    "lead": {
        **ATTRIBUTES["lead"],
        "leadsourcecode": column("leadsourcecode", "Picklist", options=SHORT_SOURCES, display_name="Lead Source"),
        "industrycode": column("industrycode", "Picklist", schema_name="IndustryCode", options=SHORT_SOURCES),
    }
}
OPTIONS_WORDS = "(options: 1 Advertisement, 2 Employee Referral)"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param(
            "leadsourcecode",
            "Carrier Pigeon",
            f"leadsourcecode: 'Carrier Pigeon' is not an option of Lead Source {OPTIONS_WORDS}",
            id="unmapped-label",
        ),
        pytest.param(
            "leadsourcecode", 7, f"leadsourcecode: 7 is not an option of Lead Source {OPTIONS_WORDS}", id="number"
        ),
        pytest.param(
            "leadsourcecode", 1.5, f"leadsourcecode: 1.5 is not an option of Lead Source {OPTIONS_WORDS}", id="fraction"
        ),
        pytest.param(
            "industrycode",
            "Farming",
            f"industrycode: 'Farming' is not an option of IndustryCode {OPTIONS_WORDS}",
            id="no-display-name-uses-schema-name",
        ),
        pytest.param(
            "leadsourcecode", True, "leadsourcecode: expected a whole number or null, got true (boolean)", id="boolean"
        ),
    ],
)
def test_an_option_column_names_its_options_whatever_the_wrong_value(field: str, value: Any, message: str) -> None:
    """A label the option set lacks ("Carrier Pigeon") is not a type problem to the user: it is not an option."""
    violations = DynamicsValidator(LABELLED).validate("lead", "create", {**LEAD_CREATE_BASE, field: value})
    assert [(v.field, v.rule, v.message) for v in violations] == [
        (field, "type" if isinstance(value, bool) else "option_value", message)
    ]
