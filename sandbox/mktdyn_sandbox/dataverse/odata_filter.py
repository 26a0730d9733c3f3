"""OData ``$filter``: a real tokenizer and parser, compiled to parameterised SQL or a Python predicate.

Clients put user data (emails with apostrophes, plus signs, text that looks like OData) into string
literals, so the filter must be parsed, never pasted: every literal becomes a bound SQL parameter and
every property name is checked against the table's columns before it reaches SQL. The grammar is the
subset Dataverse documents (reference §2.1): ``eq ne gt ge lt le``, ``and or not``, parentheses,
``contains/startswith/endswith``, ``Microsoft.Dynamics.CRM.In/NotIn``, and literals (quoted strings with
``''`` escaping, numbers, GUIDs, datetimes, dates, ``null``, ``true``/``false``, enum literals).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

COMPARISONS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
SWAPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
FUNCTIONS = ("contains", "startswith", "endswith")
IN_FUNCTIONS = {"microsoft.dynamics.crm.in": False, "microsoft.dynamics.crm.notin": True}
_EDM_NAMES = {
    "string": "Edm.String",
    "int": "Edm.Int32",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
    "guid": "Edm.Guid",
    "decimal": "Edm.Decimal",
    "null": "null",
    "enum": "Edm.Enum",
}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})(?![\w:]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlLfF]?(?![\w.]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)(?P<enum>'(?:[^']|'')*')?
  | (?P<punct>[(),=\[\]])
    """,
    re.VERBOSE,
)


class FilterError(ValueError):
    """A ``$filter`` that does not parse or does not type-check; the message says where and why."""


@dataclass(frozen=True)
class Token:
    """One lexical token and where it starts (for error messages)."""

    kind: str
    text: str
    position: int


@dataclass(frozen=True)
class Literal:
    """A literal value and the Edm kind it was written as."""

    kind: str
    value: Any
    text: str


@dataclass(frozen=True)
class Compare:
    """``property op literal``."""

    op: str
    prop: str
    literal: Literal


@dataclass(frozen=True)
class Function:
    """``contains(property, 'text')`` and friends."""

    name: str
    prop: str
    literal: Literal


@dataclass(frozen=True)
class InList:
    """``Microsoft.Dynamics.CRM.In(PropertyName='x',PropertyValues=[...])``."""

    prop: str
    values: tuple[Literal, ...]
    negate: bool


@dataclass(frozen=True)
class Logical:
    """``left and right`` / ``left or right``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Node


Node = Compare | Function | InList | Logical | Not


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; anything unrecognised is a syntax error at its position."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(
                f"Syntax error: character '{text[position]}' at position {position} is not valid in '{text}'."
            )
        kind = match.lastgroup or ""
        if match.group("name") is not None:
            kind = "enum" if match.group("enum") is not None else "name"
        if kind != "ws":
            tokens.append(Token(kind, match.group(0), position))
        position = match.end()
    return tokens


def _unquote(quoted: str) -> str:
    return quoted[1:-1].replace("''", "'")


def literal_of(token: Token) -> Literal:
    """The value of a literal token (used for URL keys too)."""
    text = token.text
    if token.kind == "string":
        return Literal("string", _unquote(text), text)
    if token.kind == "guid":
        return Literal("guid", text.lower(), text)
    if token.kind == "datetime":
        iso = text.replace("Z", "+00:00")
        iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)  # .NET writes 7 fractional digits; Python reads 6
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError as exc:
            raise FilterError(
                f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'."
            ) from exc
        return Literal("datetime", moment.astimezone(UTC), text)
    if token.kind == "date":
        return Literal("date", text, text)
    if token.kind == "number":
        body = text.rstrip("mMdDlLfF")
        if re.fullmatch(r"-?\d+", body):
            return Literal("int", int(body), text)
        return Literal("decimal", float(body), text)
    if token.kind == "enum":
        _, _, quoted = text.partition("'")
        return Literal("enum", _unquote("'" + quoted), text)
    lowered = text.lower()
    if lowered == "null":
        return Literal("null", None, text)
    if lowered in ("true", "false"):
        return Literal("bool", lowered == "true", text)
    raise FilterError(f"Syntax error at position {token.position}: '{text}' is not a literal.")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise FilterError(f"Syntax error: unexpected end of '{self.text}'.")
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise FilterError(
                f"Syntax error at position {token.position} in '{self.text}': expected '{text}', found '{token.text}'."
            )

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            raise FilterError(f"Syntax error at position {token.position} in '{self.text}': unexpected '{token.text}'.")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.keyword("or"):
            node = Logical("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.keyword("and"):
            node = Logical("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.keyword("not"):
            return Not(self.parse_unary())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        token = self.peek()
        if self.at("("):
            self.take()
            node = self.parse_or()
            self.expect(")")
            return node
        if token is not None and token.kind == "name":
            following = self.tokens[self.index + 1] if self.index + 1 < len(self.tokens) else None
            if following is not None and following.text == "(":
                return self.parse_function()
        left = self.take()
        op_token = self.take()
        if op_token.kind != "name" or op_token.text not in COMPARISONS:
            raise FilterError(
                f"Syntax error at position {op_token.position} in '{self.text}': expected a "
                f"comparison operator, found '{op_token.text}'."
            )
        right = self.take()
        if self._is_property(left) and not self._is_property(right):
            return Compare(op_token.text, left.text, literal_of(right))
        if self._is_property(right) and not self._is_property(left):
            return Compare(SWAPPED[op_token.text], right.text, literal_of(left))
        raise FilterError(
            f"Syntax error at position {left.position} in '{self.text}': a comparison needs one "
            f"property and one literal."
        )

    @staticmethod
    def _is_property(token: Token) -> bool:
        return token.kind == "name" and token.text.lower() not in ("null", "true", "false")

    def parse_function(self) -> Node:
        name_token = self.take()
        name = name_token.text.lower()
        self.expect("(")
        if name in IN_FUNCTIONS:
            return self.parse_in(IN_FUNCTIONS[name])
        if name not in FUNCTIONS:
            raise FilterError(f"An unknown function with name '{name_token.text}' was found.")
        prop = self.take()
        if not self._is_property(prop):
            raise FilterError(f"Syntax error at position {prop.position} in '{self.text}': {name} needs a property.")
        self.expect(",")
        literal = literal_of(self.take())
        self.expect(")")
        return Function(name, prop.text, literal)

    def parse_in(self, negate: bool) -> Node:
        arguments: dict[str, Any] = {}
        while True:
            key = self.take()
            self.expect("=")
            if key.text == "PropertyValues":
                self.expect("[")
                values: list[Literal] = []
                while self.peek() is not None and not self.at("]"):
                    values.append(literal_of(self.take()))
                    if self.at(","):
                        self.take()
                self.expect("]")
                arguments["PropertyValues"] = tuple(values)
            else:
                arguments[key.text] = literal_of(self.take())
            if self.at(","):
                self.take()
                continue
            self.expect(")")
            break
        prop = arguments.get("PropertyName")
        if not isinstance(prop, Literal) or prop.kind != "string" or "PropertyValues" not in arguments:
            raise FilterError("Microsoft.Dynamics.CRM.In needs PropertyName='x' and PropertyValues=[...].")
        return InList(str(prop.value), arguments["PropertyValues"], negate)


def parse(text: str) -> Node:
    """Parse a ``$filter`` expression into a tree; raise FilterError with the position on bad syntax."""
    if not text.strip():
        raise FilterError("The $filter expression is empty.")
    return _Parser(text).parse()


# -- SQL --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """How a property reads in SQL: an expression, its kind, and an optional case-folded twin."""

    sql: str
    kind: str
    folded_sql: str | None = None


def datetime_text(moment: datetime, round_up: bool = False) -> str:
    """Stored datetimes have second precision; round a literal so comparisons keep their meaning."""
    moment = moment.astimezone(UTC)
    if round_up and moment.microsecond:
        moment = moment + timedelta(seconds=1)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def coerce(literal: Literal, kind: str, op: str, prop: str) -> Any:
    """The SQL parameter for a literal compared with a column of ``kind``; FilterError on a type mismatch."""
    incompatible = FilterError(
        f"A binary operator with incompatible types was detected. Found operand types '{_EDM_NAMES.get(kind, kind)}' "
        f"and '{_EDM_NAMES.get(literal.kind, literal.kind)}' for operator kind '{op}' on '{prop}'."
    )
    if literal.kind == "null":
        return None
    if kind == "string":
        if literal.kind not in ("string", "enum"):
            raise incompatible
        return literal.value
    if kind == "int":
        if literal.kind != "int":
            raise incompatible
        return literal.value
    if kind == "bool":
        if literal.kind != "bool":
            raise incompatible
        return 1 if literal.value else 0
    if kind == "guid":
        if literal.kind != "guid":
            raise incompatible
        return literal.value
    if kind == "datetime":
        if literal.kind == "date":
            return f"{literal.value}T00:00:00Z"
        if literal.kind != "datetime":
            raise incompatible
        return datetime_text(literal.value, round_up=op in ("ge", "lt"))
    if kind == "date":
        if literal.kind == "date":
            return literal.value
        if literal.kind == "datetime":
            return literal.value.date().isoformat()
        raise incompatible
    raise incompatible


def _from_text(literal: Literal, kind: str) -> Literal:
    """In/NotIn take every value as a string (``PropertyValues=['1','2']``); read it as the column's kind."""
    if literal.kind != "string" or kind in ("string", "date"):
        return literal
    tokens = tokenize(str(literal.value))
    if len(tokens) != 1:
        raise FilterError(f"Cannot convert the literal '{literal.value}' to the type of the property.")
    return literal_of(tokens[0])


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def to_sql(node: Node, resolve: Callable[[str], Column]) -> tuple[str, list[Any]]:
    """Compile a filter tree to a SQL condition and its parameters (literals never enter the SQL text)."""
    if isinstance(node, Logical):
        left_sql, left_params = to_sql(node.left, resolve)
        right_sql, right_params = to_sql(node.right, resolve)
        return f"({left_sql} {node.op.upper()} {right_sql})", left_params + right_params
    if isinstance(node, Not):
        inner_sql, inner_params = to_sql(node.operand, resolve)
        return f"(NOT COALESCE({inner_sql}, 0))", inner_params
    if isinstance(node, Function):
        column = resolve(node.prop)
        if column.kind != "string" or node.literal.kind != "string":
            raise FilterError(f"The function '{node.name}' needs a string property and a string literal.")
        text = _like_escape(str(node.literal.value))
        pattern = {"contains": f"%{text}%", "startswith": f"{text}%", "endswith": f"%{text}"}[node.name]
        return f"({column.sql} LIKE ? ESCAPE '\\')", [pattern]
    if isinstance(node, InList):
        column = resolve(node.prop)
        values = [coerce(_from_text(v, column.kind), column.kind, "eq", node.prop) for v in node.values]
        if not values:
            return ("1" if node.negate else "0"), []
        expression = column.sql
        if column.folded_sql is not None:
            expression, values = column.folded_sql, [v.casefold() if isinstance(v, str) else v for v in values]
        collate = " COLLATE NOCASE" if column.kind == "string" and column.folded_sql is None else ""
        marks = ",".join("?" for _ in values)
        sql = f"({expression}{collate} IN ({marks}))"
        return (f"({expression} IS NULL OR NOT {sql})" if node.negate else sql), values
    column = resolve(node.prop)
    value = coerce(node.literal, column.kind, node.op, node.prop)
    if value is None:
        if node.op not in ("eq", "ne"):
            return "0", []
        return f"({column.sql} IS {'NOT ' if node.op == 'ne' else ''}NULL)", []
    expression = column.sql
    collate = " COLLATE NOCASE" if column.kind == "string" else ""
    if column.folded_sql is not None and node.op in ("eq", "ne") and isinstance(value, str):
        expression, value, collate = column.folded_sql, value.casefold(), ""
    condition = f"{expression}{collate} {COMPARISONS[node.op]} ?"
    if node.op == "ne":
        # Dataverse's "ne" keeps rows where the column is empty (SQL Server NotEqual semantics of the platform).
        return f"({expression} IS NULL OR {condition})", [value]
    return f"({condition})", [value]


# -- Python (metadata lists) ---------------------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def evaluate(node: Node, lookup: Callable[[str], Any]) -> bool:
    """Evaluate a filter against an in-memory object (metadata answers are small, unpaged lists)."""
    if isinstance(node, Logical):
        if node.op == "and":
            return evaluate(node.left, lookup) and evaluate(node.right, lookup)
        return evaluate(node.left, lookup) or evaluate(node.right, lookup)
    if isinstance(node, Not):
        return not evaluate(node.operand, lookup)
    if isinstance(node, Function):
        actual = lookup(node.prop)
        if not isinstance(actual, str):
            return False
        needle, haystack = str(node.literal.value).casefold(), actual.casefold()
        return {
            "contains": needle in haystack,
            "startswith": haystack.startswith(needle),
            "endswith": haystack.endswith(needle),
        }[node.name]
    if isinstance(node, InList):
        found = _normalise(lookup(node.prop)) in {_normalise(v.value) for v in node.values}
        return found != node.negate
    actual = _normalise(lookup(node.prop))
    expected = _normalise(node.literal.value)
    if node.op == "eq":
        return bool(actual == expected)
    if node.op == "ne":
        return bool(actual != expected)
    if actual is None or expected is None:
        return False
    try:
        return bool(
            {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected, "le": actual <= expected}[
                node.op
            ]
        )
    except TypeError:
        return False
