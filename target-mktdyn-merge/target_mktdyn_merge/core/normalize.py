"""Canonical values for comparing a Marketo field with a Dynamics column, and native values for writing.

The merge compares the two systems' values only after both are turned into one *canonical* form per kind
(docs/architecture.md §4: trim strings, canonical dates/numbers, option-set value⇄label map), because the systems store
the same fact differently: Marketo writes ``"Web"`` where Dynamics stores ``8``, Dynamics answers
``2024-01-05T17:30:00Z`` where the Singer SDK hands the sink a ``datetime``. Canonical values are plain JSON
types (``str``, ``int``, ``bool``, ``None``) so the store can keep them as the baseline unchanged.

Normalization never raises on data: a value that cannot be read as its kind (``"soon"`` for a date)
canonicalizes to its trimmed text, so it compares unequal, and the native-value helpers pass it through
unchanged, so the payload validation, not the merge, rejects it and names the field.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

if TYPE_CHECKING:
    from target_mktdyn_merge.core.fieldmap import FieldRule

Kind = Literal["string", "email", "phone", "url", "text", "boolean", "integer", "number", "date", "datetime", "option"]
"""What a mapped field holds; decides how its values are compared and written."""

KINDS: frozenset[str] = frozenset(get_args(Kind))

Canonical: TypeAlias = str | int | bool | None
"""A comparable, JSON-safe value: what the merge compares and what a baseline stores."""

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


@dataclass(frozen=True)
class OptionSet:
    """A Dynamics option set: integer values and their labels, looked up case-insensitively.

    Marketo keeps option-like fields (``leadSource``) as free text holding the *label*, Dynamics as the
    integer *value*; this is the bridge. Labels are matched trimmed and case-folded because people type
    ``"web"`` as often as ``"Web"``.

    Attributes:
        labels: Option value → label, as Dynamics' metadata lists them.
    """

    labels: Mapping[int, str]
    _by_label: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_label: dict[str, int] = {}
        # Sorted so that, if two options share a label (Dataverse allows it), the lowest value wins,
        # deterministically, whatever order the metadata came in.
        for value, label in sorted(self.labels.items()):
            by_label.setdefault(label.strip().casefold(), value)
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "_by_label", by_label)

    @classmethod
    def from_metadata(cls, option_set: Mapping[str, Any], language_code: int | None = None) -> OptionSet:
        """Build from Dataverse ``OptionSet`` metadata (``{"Options": [{"Value": 8, "Label": {...}}]}``).

        Args:
            option_set: The ``OptionSet`` object of a ``PicklistAttributeMetadata`` (or state/status) answer.
            language_code: The LCID whose label to use; by default the user-localized label, else the first.

        Returns:
            The option set; options without any label are kept under their value's text.
        """
        labels: dict[int, str] = {}
        for option in option_set.get("Options") or ():
            value = int(option["Value"])
            label_block = option.get("Label") or {}
            localized = label_block.get("LocalizedLabels") or []
            chosen: Any = None
            if language_code is not None:
                chosen = next((lab for lab in localized if lab.get("LanguageCode") == language_code), None)
            if chosen is None:
                chosen = label_block.get("UserLocalizedLabel") or (localized[0] if localized else None)
            labels[value] = str(chosen.get("Label")) if chosen else str(value)
        return cls(labels)

    def to_label(self, value: int) -> str | None:
        """The label of an option value, or None when the set has no such value."""
        return self.labels.get(value)

    def to_value(self, label: str) -> int | None:
        """The option value of a label (trimmed, case-insensitive), or None when no option has it."""
        return self._by_label.get(label.strip().casefold())


def canonical(kind: Kind | str, value: object, options: OptionSet | None = None) -> Canonical:
    """The comparable form of a value of the given kind.

    Rules per kind:

    - ``string``, ``phone``, ``url``: trimmed text; ``None`` and ``""`` (and whitespace) are both blank →
      ``None``. Phones and URLs are not reformatted: that would be lossy, and equal-looking values that
      differ only in formatting are left to the per-side baseline (a *stable* divergence, not a write).
    - ``text``: as string, with CRLF and bare CR read as LF (Marketo exports carry bare CRs).
    - ``email``: trimmed and case-folded (docs/architecture.md §4's normalized email).
    - ``boolean``: ``True``/``False``; accepts bools, ``"true"``/``"false"`` (and yes/no, t/f), ``1``/``0``.
      **``None`` is ``False``**: an unset Marketo boolean and an unset Dynamics two-option both display
      as "No", Marketo's bulk export writes unset booleans as ``null``, and Dynamics two-options default to
      false; telling them apart would only produce collisions and writes of ``false`` that change nothing a
      person can see. Consequently a boolean is never *blank* for the first-link rule.
    - ``integer``: ``int`` (from int, integral float/Decimal, or numeric text such as ``"12"``/``"12.0"``).
    - ``number``: exact decimal *text* without exponent or trailing zeros (``"12.5"``, ``"0"``), because a
      float would make ``0.1 + 0.2`` style noise into a change, and JSON has no Decimal.
    - ``date``: ``"YYYY-MM-DD"``. A datetime or an ISO date-time string keeps its own calendar date, with no
      time-zone conversion (a birthday does not move across midnight UTC).
    - ``datetime``: UTC, whole seconds (truncated, as Dataverse stores them), ``"YYYY-MM-DDTHH:MM:SSZ"``.
      Accepts ``datetime`` objects (naive = UTC) and ISO strings with ``Z``, ``+00:00`` or ``+0000``.
    - ``option``: the case-folded *label*. An int is looked up in ``options``; an int the set lacks (or
      with no set) becomes its decimal text so it still compares, unequal to every label.

    Args:
        kind: The field's kind.
        value: The value as staged from either system.
        options: The Dynamics column's option set (``option`` kind only).

    Returns:
        The canonical value; unreadable values come back as their trimmed text.
    """
    if kind == "boolean":
        return _canonical_boolean(value)
    if value is None:
        return None
    if kind == "email":
        text = _text(value)
        return text.casefold() if text is not None else None
    if kind == "text":
        text = _text(value)
        return text.replace("\r\n", "\n").replace("\r", "\n") if text is not None else None
    if kind == "integer":
        return _canonical_integer(value)
    if kind == "number":
        number = _to_decimal(value)
        return _decimal_text(number) if number is not None else _text(value)
    if kind == "date":
        day = _to_date(value)
        return day.isoformat() if day is not None else _text(value)
    if kind == "datetime":
        moment = _to_datetime(value)
        return _utc_text(moment) if moment is not None else _text(value)
    if kind == "option":
        return _canonical_option(value, options)
    return _text(value)


def is_blank(value: Canonical) -> bool:
    """Whether a canonical value is blank (the first-link rule's "no value")."""
    return value is None


def to_dynamics_value(rule: FieldRule, value: object, options: OptionSet | None = None) -> Any:
    """The native value to write to the rule's Dynamics column, from a Marketo (or canonical) value.

    Option labels become their integer value; an unmapped label is passed through unchanged, so the payload
    validation (option-set enum) rejects it and names the column instead of the merge guessing.

    Args:
        rule: The field's mapping.
        value: The value to write, raw as Marketo holds it, or canonical.
        options: The column's option set.

    Returns:
        A JSON-ready value: text, int, float, bool or None.
    """
    if rule.kind != "option":
        return _native(rule.kind, value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        mapped = options.to_value(text) if options is not None else None
        return mapped if mapped is not None else value
    return value


def to_marketo_value(rule: FieldRule, value: object, options: OptionSet | None = None) -> Any:
    """The native value to write to the rule's Marketo field, from a Dynamics (or canonical) value.

    Option values become their label; an int the option set lacks is passed through unchanged so Marketo's
    field-metadata check rejects it, naming the field. A canonical (case-folded) label is written as the
    option set's own spelling.

    Args:
        rule: The field's mapping.
        value: The value to write, raw as Dynamics holds it, or canonical.
        options: The Dynamics column's option set.

    Returns:
        A JSON-ready value: text, int, float, bool or None.
    """
    if rule.kind != "option":
        return _native(rule.kind, value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        label = options.to_label(value) if options is not None else None
        return label if label is not None else value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if options is not None:
            mapped = options.to_value(text)
            if mapped is not None:
                return options.to_label(mapped)
        return text
    return value


def _native(kind: str, value: object) -> Any:
    """The JSON-ready value of a non-option kind, shared by both write directions."""
    if kind == "boolean":
        flag = _canonical_boolean(value)
        return flag if isinstance(flag, bool) else value
    if value is None:
        return None
    if kind == "email":
        return _text(value)  # the matching key keeps its case; edge spaces are not part of an address
    if kind in {"string", "phone", "url", "text"}:
        # The source's own spelling, byte for byte (edge spaces, a trailing CR): canonical forms are for
        # comparing only (docs/architecture.md §10, values arrive byte-exact). Only a blank value (empty or whitespace)
        # is written as no value: Marketo has no empty string.
        text = value if isinstance(value, str) else str(value)
        return text if text.strip() else None
    if kind == "integer":
        number = _canonical_integer(value)
        return number if isinstance(number, int) else value
    if kind == "number":
        decimal = _to_decimal(value)
        if decimal is None:
            return value
        return int(decimal) if decimal == decimal.to_integral_value() else float(decimal)
    if kind == "date":
        day = _to_date(value)
        return day.isoformat() if day is not None else value
    if kind == "datetime":
        moment = _to_datetime(value)
        return _utc_text(moment) if moment is not None else value
    return value


#: Longest email that gets a matching key. No real address is longer (RFC 5321 allows 254 characters;
#: Marketo keeps 255, Dynamics 100), and PostgreSQL refuses a btree index entry beyond about 2.7 KB: a hostile
#: 10 KB "email" is staged as it came, without a matching key (it can match nothing anyway).
MATCHABLE_EMAIL_LENGTH = 320


def normalize_email(value: object) -> str | None:
    """The matching key of an email: trimmed and case-folded; None when blank or too long to be an address.

    The one normaliser: the store keys staged records by it and matching compares by it, so the two agree.
    """
    key = canonical("email", value)
    return key if isinstance(key, str) and len(key) <= MATCHABLE_EMAIL_LENGTH else None


def _text(value: object) -> str | None:
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


def _canonical_boolean(value: object) -> Canonical:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float | Decimal) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS or not word:
            return False
    return _text(value)


def _to_decimal(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text that round-trips, not the binary expansion
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _decimal_text(number: Decimal) -> str:
    if number.is_zero():
        return "0"
    return format(number.normalize(), "f")


def _canonical_integer(value: object) -> Canonical:
    number = _to_decimal(value)
    if number is None:
        return _text(value)
    if number == number.to_integral_value():
        return int(number)
    return _decimal_text(number)


def _to_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 10 and (len(text) == 10 or text[10] in "T "):
            try:
                return dt.date.fromisoformat(text[:10])
            except ValueError:
                return None
    return None


def _to_datetime(value: object) -> dt.datetime | None:
    moment: dt.datetime
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z+0000"):  # Marketo asset-API quirk: "2020-01-01T00:00:00Z+0000"
            text = text[: -len("+0000")]
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _utc_text(moment: dt.datetime) -> str:
    # isoformat, not strftime: strftime("%Y") does not zero-pad years before 1000 on Linux.
    return moment.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds") + "Z"


def _canonical_option(value: object, options: OptionSet | None) -> Canonical:
    if isinstance(value, bool):
        return str(value).casefold()
    if isinstance(value, int):
        label = options.to_label(value) if options is not None else None
        return label.strip().casefold() if label is not None else str(value)
    text = _text(value)
    return text.casefold() if text is not None else None
