"""The ``$filter`` parser and compiler in isolation: syntax, typing, and that literals never become SQL."""

from __future__ import annotations

import sqlite3

import pytest
from mktdyn_sandbox.dataverse import odata_filter as f
from mktdyn_sandbox.dataverse.metadata import LEAD
from mktdyn_sandbox.dataverse.query import column


def _sql(text: str) -> tuple[str, list[object]]:
    return f.to_sql(f.parse(text), lambda name: column(LEAD, name))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lastname eq 'O''Brien'", f.Compare("eq", "lastname", f.Literal("string", "O'Brien", "'O''Brien'"))),
        ("3 lt leadsourcecode", f.Compare("gt", "leadsourcecode", f.Literal("int", 3, "3"))),
        ("not (statecode eq 0)", f.Not(f.Compare("eq", "statecode", f.Literal("int", 0, "0")))),
    ],
)
def test_parse_shapes(text: str, expected: f.Node) -> None:
    assert f.parse(text) == expected


def test_precedence_and_binds_or_loosest() -> None:
    node = f.parse("a eq 1 or b eq 2 and c eq 3")
    assert isinstance(node, f.Logical)
    assert node.op == "or"
    assert isinstance(node.right, f.Logical)
    assert node.right.op == "and"


@pytest.mark.parametrize(
    "text",
    [
        "lastname eq",
        "lastname eq 'open",
        "(lastname eq 'a'",
        "lastname ~ 'a'",
        "lastname eq 'a' extra",
        "unknownfn(lastname,'a')",
        "'a' eq 'b'",
        "",
    ],
)
def test_syntax_errors(text: str) -> None:
    with pytest.raises(f.FilterError):
        f.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "leadsourcecode eq 'Web'",
        "lastname eq 5",
        "donotbulkemail eq 1",
        "leadid eq 'not-a-guid'",
        "modifiedon gt 'yesterday'",
    ],
)
def test_type_errors(text: str) -> None:
    with pytest.raises(f.FilterError):
        _sql(text)


def test_unknown_property_is_refused_before_sql() -> None:
    with pytest.raises(f.FilterError, match="character ';'"):
        _sql("x; DROP TABLE lead_rows eq 1")
    with pytest.raises(Exception, match="Could not find a property named 'data'"):
        _sql("data eq 'x'")


def test_literals_are_parameters() -> None:
    sql, params = _sql("lastname eq 'a'' or 1 eq 1' and emailaddress1 eq 'X@Y.com'")
    assert "or 1 eq 1" not in sql
    assert params == ["a' or 1 eq 1", "x@y.com"]
    assert "email = ?" in sql  # the case-folded, indexed email column


def test_compiled_sql_runs_and_means_what_it_says() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT, versionnumber INT, createdon TEXT, "
        "modifiedon TEXT, email TEXT, data TEXT)"
    )
    rows = [
        ("A", "o'brien@x.com", 8, "2024-01-05T10:00:00Z"),
        ("B", None, None, "2024-01-06T10:00:00Z"),
        ("C", "c@x.com", 3, "2024-01-07T10:00:00Z"),
    ]
    for index, (name, email, source, modified) in enumerate(rows):
        conn.execute(
            "INSERT INTO t VALUES (?, ?, 1, ?, ?, ?, json_object('lastname', ?, 'leadsourcecode', ?))",
            (
                index,
                f"{index:08d}-0000-0000-0000-000000000000",
                modified,
                modified,
                email.casefold() if email else None,
                name,
                source,
            ),
        )

    def names(text: str) -> list[str]:
        sql, params = _sql(text)
        return [
            r[0]
            for r in conn.execute(f"SELECT json_extract(data, '$.lastname') FROM t WHERE {sql} ORDER BY seq", params)
        ]

    assert names("emailaddress1 eq 'O''BRIEN@x.com'") == ["A"]
    assert names("leadsourcecode ne 8") == ["B", "C"]
    assert names("leadsourcecode eq null or leadsourcecode lt 5") == ["B", "C"]
    assert names("modifiedon ge 2024-01-06T10:00:00.5Z") == ["C"]
    assert names("modifiedon gt 2024-01-06T09:59:59.5Z") == ["B", "C"]
    assert names("contains(lastname, 'a') or startswith(lastname,'c')") == ["A", "C"]
    assert names("Microsoft.Dynamics.CRM.NotIn(PropertyName='leadsourcecode',PropertyValues=['8'])") == ["B", "C"]
