"""Canonical values per kind, option sets, and the native values written to each side."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from target_mktdyn_merge.core.fieldmap import FieldRule
from target_mktdyn_merge.core.normalize import (
    Canonical,
    Kind,
    OptionSet,
    canonical,
    to_dynamics_value,
    to_marketo_value,
)

LEAD_SOURCE = OptionSet(
    {
        1: "Advertisement",
        2: "Employee Referral",
        3: "External Referral",
        4: "Partner",
        5: "Public Relations",
        6: "Seminar",
        7: "Trade Show",
        8: "Web",
        9: "Word of Mouth",
        10: "Other",
    }
)
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))

CANONICAL_CASES: list[tuple[str, str, Any, Canonical]] = [
    # (id, kind, value, canonical)
    ("string-trimmed", "string", "  Ann  ", "Ann"),
    ("string-none-blank", "string", None, None),
    ("string-empty-blank", "string", "", None),
    ("string-whitespace-blank", "string", "   ", None),
    ("string-keeps-case", "string", "McDonald", "McDonald"),
    ("string-unicode-kept", "string", " Zoë O'Brien ", "Zoë O'Brien"),
    ("phone-not-reformatted", "phone", " +1 (555) 010-0000 ", "+1 (555) 010-0000"),
    ("url-trimmed", "url", " https://Example.com/Path ", "https://Example.com/Path"),
    ("text-crlf-to-lf", "text", "Line 1\r\nLine 2\rLine 3", "Line 1\nLine 2\nLine 3"),
    ("email-trim-casefold", "email", "  Ann.Lee+news@Example.COM ", "ann.lee+news@example.com"),
    ("email-blank", "email", " ", None),
    ("boolean-true", "boolean", True, True),
    ("boolean-false", "boolean", False, False),
    ("boolean-none-is-false", "boolean", None, False),
    ("boolean-text-true", "boolean", "true", True),
    ("boolean-text-false", "boolean", " FALSE ", False),
    ("boolean-one", "boolean", 1, True),
    ("boolean-zero", "boolean", 0, False),
    ("boolean-float-one", "boolean", 1.0, True),
    ("boolean-empty-text-false", "boolean", "", False),
    ("boolean-unreadable-kept", "boolean", "maybe", "maybe"),
    ("integer-int", "integer", 12, 12),
    ("integer-text", "integer", " 12 ", 12),
    ("integer-integral-float", "integer", 12.0, 12),
    ("integer-integral-text", "integer", "12.00", 12),
    ("integer-fraction-kept-exact", "integer", "12.5", "12.5"),
    ("integer-none", "integer", None, None),
    ("integer-unreadable", "integer", "twelve", "twelve"),
    ("number-trailing-zeros", "number", "12.500", "12.5"),
    ("number-float-shortest", "number", 0.1, "0.1"),
    ("number-decimal", "number", Decimal("1E+3"), "1000"),
    ("number-int", "number", 7, "7"),
    ("number-zero", "number", "-0.00", "0"),
    ("number-negative", "number", -3.25, "-3.25"),
    ("number-thousands-separator", "number", "1,234.50", "1234.5"),
    ("number-nan-unreadable", "number", "NaN", "NaN"),
    ("date-text", "date", "2024-02-29", "2024-02-29"),
    ("date-object", "date", dt.date(2024, 2, 29), "2024-02-29"),
    ("date-from-datetime-keeps-calendar-day", "date", dt.datetime(2024, 2, 29, 23, 30, tzinfo=PLUS_TWO), "2024-02-29"),
    ("date-from-marketo-datetime-text", "date", "2024-02-29T00:00:00+00:00", "2024-02-29"),
    ("date-unreadable", "date", "soon", "soon"),
    ("datetime-z", "datetime", "2024-01-05T17:30:00Z", "2024-01-05T17:30:00Z"),
    ("datetime-offset-to-utc", "datetime", "2024-01-05T19:30:00+02:00", "2024-01-05T17:30:00Z"),
    ("datetime-marketo-plus0000", "datetime", "2024-01-05T17:30:00+0000", "2024-01-05T17:30:00Z"),
    ("datetime-asset-api-quirk", "datetime", "2024-01-05T17:30:00Z+0000", "2024-01-05T17:30:00Z"),
    ("datetime-fraction-truncated", "datetime", "2024-01-05T17:30:00.999Z", "2024-01-05T17:30:00Z"),
    (
        "datetime-object-aware",
        "datetime",
        dt.datetime(2024, 1, 5, 19, 30, 5, 123, tzinfo=PLUS_TWO),
        "2024-01-05T17:30:05Z",
    ),
    ("datetime-object-naive-is-utc", "datetime", dt.datetime(2024, 1, 5, 17, 30), "2024-01-05T17:30:00Z"),
    ("datetime-date-only-midnight", "datetime", "2024-01-05", "2024-01-05T00:00:00Z"),
    ("datetime-early-year-padded", "datetime", "0999-01-05T00:00:00Z", "0999-01-05T00:00:00Z"),
    ("datetime-unreadable", "datetime", "yesterday", "yesterday"),
    ("datetime-none", "datetime", None, None),
    ("option-int-to-label", "option", 8, "web"),
    ("option-label-casefolded", "option", " Trade SHOW ", "trade show"),
    ("option-unknown-int-as-text", "option", 99, "99"),
    ("option-unknown-label-kept", "option", "Webinar", "webinar"),
    ("option-blank", "option", "", None),
]


@pytest.mark.parametrize(
    ("kind", "value", "expected"), [c[1:] for c in CANONICAL_CASES], ids=[c[0] for c in CANONICAL_CASES]
)
def test_canonical(kind: str, value: Any, expected: Canonical) -> None:
    assert canonical(kind, value, LEAD_SOURCE) == expected


def test_option_without_option_set_compares_as_number() -> None:
    assert canonical("option", 8) == "8"


@pytest.mark.parametrize(
    ("label", "value"),
    [("Web", 8), ("web", 8), ("  TRADE show ", 7), ("Word of Mouth", 9), ("Webinar", None), ("", None)],
    ids=["exact", "lower", "spaced-upper", "multi-word", "unknown", "empty"],
)
def test_option_set_to_value_is_case_insensitive(label: str, value: int | None) -> None:
    assert LEAD_SOURCE.to_value(label) == value


def test_option_set_to_label() -> None:
    assert LEAD_SOURCE.to_label(6) == "Seminar"
    assert LEAD_SOURCE.to_label(99) is None


def test_option_set_duplicate_label_lowest_value_wins() -> None:
    assert OptionSet({5: "Web", 2: "web"}).to_value("WEB") == 2


def test_option_set_from_dataverse_metadata() -> None:
    metadata = {
        "Options": [
            {"Value": 8, "Label": {"LocalizedLabels": [{"Label": "Web", "LanguageCode": 1033}]}},
            {
                "Value": 6,
                "Label": {
                    "LocalizedLabels": [
                        {"Label": "Séminaire", "LanguageCode": 1036},
                        {"Label": "Seminar", "LanguageCode": 1033},
                    ],
                    "UserLocalizedLabel": {"Label": "Seminar", "LanguageCode": 1033},
                },
            },
            {"Value": 11, "Label": {"LocalizedLabels": []}},
        ]
    }
    options = OptionSet.from_metadata(metadata)
    assert options.labels == {8: "Web", 6: "Seminar", 11: "11"}
    assert OptionSet.from_metadata(metadata, language_code=1036).to_label(6) == "Séminaire"


KINDS_USED: tuple[Kind, ...] = ("string", "email", "boolean", "integer", "number", "date", "datetime", "option", "text")
RULE: dict[str, FieldRule] = {kind: FieldRule("m", "d", kind) for kind in KINDS_USED}

TO_DYNAMICS_CASES: list[tuple[str, str, Any, Any]] = [
    ("option-label-to-int", "option", "Web", 8),
    ("option-label-any-case", "option", "trade show", 7),
    ("option-unknown-label-passed-through", "option", "Webinar", "Webinar"),
    ("option-int-kept", "option", 6, 6),
    ("option-blank-is-null", "option", " ", None),
    ("email-keeps-case", "email", " Ann.Lee@Example.com ", "Ann.Lee@Example.com"),
    ("string-byte-exact", "string", " Ann ", " Ann "),  # issue 22: edge spaces and a trailing CR arrive as they are
    ("string-trailing-cr-kept", "string", "Ann\r", "Ann\r"),
    ("string-whitespace-is-blank", "string", "  ", None),
    ("string-blank-clears", "string", "", None),
    ("boolean-text", "boolean", "true", True),
    ("boolean-none-false", "boolean", None, False),
    ("integer-text", "integer", "42", 42),
    ("integer-unreadable-passed-through", "integer", "many", "many"),
    ("number-fraction-float", "number", "12.50", 12.5),
    ("number-integral-int", "number", Decimal("12.0"), 12),
    ("date-from-datetime", "date", dt.datetime(2024, 2, 29, 10, 0), "2024-02-29"),
    ("datetime-object-utc-z", "datetime", dt.datetime(2024, 1, 5, 19, 30, tzinfo=PLUS_TWO), "2024-01-05T17:30:00Z"),
    ("datetime-unreadable-passed-through", "datetime", "later", "later"),
    ("text-kept", "text", "a\r\nb", "a\r\nb"),
]


@pytest.mark.parametrize(
    ("kind", "value", "expected"), [c[1:] for c in TO_DYNAMICS_CASES], ids=[c[0] for c in TO_DYNAMICS_CASES]
)
def test_to_dynamics_value(kind: str, value: Any, expected: Any) -> None:
    assert to_dynamics_value(RULE[kind], value, LEAD_SOURCE) == expected


TO_MARKETO_CASES: list[tuple[str, str, Any, Any]] = [
    ("option-int-to-label", "option", 8, "Web"),
    ("option-unknown-int-passed-through", "option", 99, 99),
    ("option-label-official-spelling", "option", "trade show", "Trade Show"),
    ("option-unknown-label-kept", "option", "Webinar", "Webinar"),
    ("option-none", "option", None, None),
    ("datetime-z", "datetime", "2024-01-05T17:30:00Z", "2024-01-05T17:30:00Z"),
    ("boolean-false", "boolean", False, False),
    ("number-float", "number", 3.25, 3.25),
]


@pytest.mark.parametrize(
    ("kind", "value", "expected"), [c[1:] for c in TO_MARKETO_CASES], ids=[c[0] for c in TO_MARKETO_CASES]
)
def test_to_marketo_value(kind: str, value: Any, expected: Any) -> None:
    assert to_marketo_value(RULE[kind], value, LEAD_SOURCE) == expected


def test_option_without_option_set_passes_values_through() -> None:
    assert to_dynamics_value(RULE["option"], "Web", None) == "Web"
    assert to_marketo_value(RULE["option"], 8, None) == 8


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("option", "Web"),
        ("datetime", dt.datetime(2024, 1, 5, 19, 30, tzinfo=PLUS_TWO)),
        ("number", "0.10"),
        ("email", " A@B.c "),
    ],
    ids=["option", "datetime", "number", "email"],
)
def test_written_value_round_trips_to_the_same_canonical(kind: str, value: Any) -> None:
    written = to_dynamics_value(RULE[kind], value, LEAD_SOURCE)
    assert canonical(kind, written, LEAD_SOURCE) == canonical(kind, value, LEAD_SOURCE)
    back = to_marketo_value(RULE[kind], written, LEAD_SOURCE)
    assert canonical(kind, back, LEAD_SOURCE) == canonical(kind, value, LEAD_SOURCE)
