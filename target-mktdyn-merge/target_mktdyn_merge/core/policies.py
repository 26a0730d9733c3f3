"""Create and delete decisions (docs/architecture.md §1, §4): pure functions of the settings and the records.

- A Marketo person with no Dynamics lead/contact is created in Dynamics as a *lead* per
  ``create_in_dynamics``: ``never``, ``flagged`` (default: only when the Marketo boolean named by
  ``create_flag_field`` is true, the analogue of the "Sync Person to Microsoft" flow action), ``always``.
  An existing lead/contact is linked by matching, never duplicated: a create is only ever decided for a
  person whose match outcome is ``none``.
- A Dynamics row with no Marketo person is created in Marketo when ``create_in_marketo`` is true and the
  sync filter lets it through (see ``matching.match_dynamics_rows``).
- A delete on one side is handled by the policy of the *other* side: ``delete_from_dynamics`` says what a
  Marketo delete does to the paired Dynamics row, ``delete_from_marketo`` what a Dynamics delete does to the
  paired person: ``ignore`` (default), ``flag`` (set ``delete_flag_field_dynamics``, default
  ``mkt_deletedinmarketo``, or ``delete_flag_field_marketo``, default ``deletedInDynamics``, to true) or
  ``delete``. The pair is always unlinked.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from target_mktdyn_merge.core.delete_policy import (
    DELETE_POLICY_VALUES,
    DELETE_SETTINGS,
    DeletePolicy,
)
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP, FieldMap
from target_mktdyn_merge.core.matching import MatchResult, ReverseMatch
from target_mktdyn_merge.core.normalize import OptionSet, canonical, to_dynamics_value, to_marketo_value
from target_mktdyn_merge.core.vocabulary import Entity, Side

CreateInDynamics = Literal["never", "flagged", "always"]
"""When a Marketo-only person becomes a Dynamics lead."""


CREATE_IN_DYNAMICS_VALUES: frozenset[str] = frozenset(get_args(CreateInDynamics))
DEFAULT_LEAD_SUBJECT_TEMPLATE = "Marketo person {firstName} {lastName}"
SUBJECT_MAX_LENGTH = 300
"""Dataverse's MaxLength of lead ``subject``; a longer generated topic is cut rather than rejected."""


#: Title and description of each create setting (the settings schema and its mirrors read them from here).
CREATE_SETTING_DOCS: Mapping[str, tuple[str, str]] = {
    "create_in_dynamics": (
        "Create leads in Dynamics",
        "For a Marketo person with no Dynamics lead or contact: never create a lead, create one only when the "
        "person's create_flag_field is true (flagged), or always. A flagged person whose lead or contact already "
        "exists is linked to it: blanks are filled from either side, differing values are kept and reported.",
    ),
    "create_flag_field": (
        "Create flag field",
        "Marketo boolean field that asks for a Dynamics lead (the Sync Person to Microsoft analogue) when "
        "create_in_dynamics is flagged.",
    ),
    "create_in_marketo": (
        "Create persons in Marketo",
        "Create a Marketo person for a Dynamics lead or contact missing there (sync filter permitting).",
    ),
}


def setting_docs() -> dict[str, tuple[str, str]]:
    """Title and description of every create and delete setting, for the settings schema."""
    docs = dict(CREATE_SETTING_DOCS)
    for spec in DELETE_SETTINGS.values():
        docs[spec.name] = (spec.title, spec.description)
    for spec in DELETE_SETTINGS.values():
        label = "Marketo delete flag field" if spec.acted_on == "marketo" else "Dynamics delete flag column"
        docs[spec.flag_setting] = (label, spec.flag_description)
    return docs


class PolicySettingError(ValueError):
    """A create/delete setting outside its choices; ``setting`` names it (no parsing of the message)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class SubjectTemplateError(ValueError):
    """The ``lead_subject_template`` cannot be rendered; the message names the placeholder."""


@dataclass(frozen=True)
class SyncPolicy:
    """The create/delete settings of the target, with the defaults docs/architecture.md §9.4 names.

    Attributes:
        create_in_dynamics: never | flagged | always.
        create_flag_field: The Marketo boolean field that asks for a create when ``flagged``.
        create_in_marketo: Whether Dynamics rows with no person are created in Marketo.
        lead_subject_template: ``str.format`` template for a created lead's ``subject``, with the person's
            Marketo fields by REST name (``{firstName}``).
        delete_from_dynamics: What a Marketo delete does to the paired Dynamics row.
        delete_from_marketo: What a Dynamics delete does to the paired Marketo person.
        delete_flag_field_dynamics: The Dynamics column set to true by ``delete_from_dynamics=flag``.
        delete_flag_field_marketo: The Marketo field set to true by ``delete_from_marketo=flag``.
    """

    create_in_dynamics: CreateInDynamics = "flagged"
    create_flag_field: str = "syncToDynamics"
    create_in_marketo: bool = True
    lead_subject_template: str = DEFAULT_LEAD_SUBJECT_TEMPLATE
    delete_from_dynamics: DeletePolicy = "ignore"
    delete_from_marketo: DeletePolicy = "ignore"
    delete_flag_field_dynamics: str = "mkt_deletedinmarketo"
    delete_flag_field_marketo: str = "deletedInDynamics"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SyncPolicy:
        """Read the settings from the target's config; absent or null settings take the defaults.

        Raises:
            PolicySettingError: Naming the setting, for a value outside its choices or an unusable template.
        """
        defaults = cls()
        values: dict[str, Any] = {}
        for name in defaults.__dataclass_fields__:
            value = config.get(name)
            values[name] = getattr(defaults, name) if value is None else value
        if values["create_in_dynamics"] not in CREATE_IN_DYNAMICS_VALUES:
            raise PolicySettingError(
                "create_in_dynamics", f"{values['create_in_dynamics']!r} is not one of never, flagged, always"
            )
        for name in ("delete_from_dynamics", "delete_from_marketo"):
            if values[name] not in DELETE_POLICY_VALUES:
                raise PolicySettingError(name, f"{values[name]!r} is not one of ignore, flag, delete")
        if not isinstance(values["create_in_marketo"], bool):
            raise PolicySettingError(
                "create_in_marketo", f"expected true or false, got {values['create_in_marketo']!r}"
            )
        for name in ("create_flag_field", "delete_flag_field_dynamics", "delete_flag_field_marketo"):
            if not isinstance(values[name], str) or not values[name].strip():
                raise PolicySettingError(name, f"expected a field name, got {values[name]!r}")
        try:
            template_placeholders(values["lead_subject_template"])
        except SubjectTemplateError as error:
            raise PolicySettingError("lead_subject_template", str(error)) from error
        return cls(**values)


@dataclass(frozen=True)
class CreateDecision:
    """Whether to create a record on one side.

    Attributes:
        create: Create it.
        target: The side the record would be created on.
        reason: Why, in words, for the activity log.
    """

    create: bool
    target: Side
    reason: str


def decide_create_in_dynamics(
    person_fields: Mapping[str, Any], match: MatchResult, policy: SyncPolicy
) -> CreateDecision:
    """Whether a Marketo person becomes a new Dynamics lead.

    Args:
        person_fields: The person's known fields.
        match: The person's match; anything but ``none`` means a record exists (or may: ambiguous), which
            is linked or skipped, never duplicated.
        policy: The settings.
    """
    if match.outcome != "none":
        return CreateDecision(False, "dynamics", f"not a Marketo-only person ({match.outcome}): no create")
    setting = policy.create_in_dynamics
    if setting == "never":
        return CreateDecision(False, "dynamics", "create_in_dynamics=never")
    if setting == "always":
        return CreateDecision(True, "dynamics", "create_in_dynamics=always")
    flag = policy.create_flag_field
    if flag not in person_fields:
        return CreateDecision(
            False, "dynamics", f"create_in_dynamics=flagged: {flag} was not extracted (select it in the tap)"
        )
    if canonical("boolean", person_fields[flag]) is True:
        return CreateDecision(True, "dynamics", f"create_in_dynamics=flagged: {flag} is true")
    return CreateDecision(False, "dynamics", f"create_in_dynamics=flagged: {flag} is not true")


#: Why a real-time "Sync Person to Microsoft" creates a lead (or does not), in the activity log's words.
SYNC_PERSON_CREATE = "Sync Person to Microsoft (real-time request): no lead or contact has the person's email"
SYNC_PERSON_EXISTS = (
    "Sync Person to Microsoft (real-time request): the {entity} already exists, so nothing was changed; it is "
    "linked, and the next sync merges it by the create path's rules"
)


def decide_requested_create(match: MatchResult) -> CreateDecision:
    """A create asked for now (a Marketo webhook's "Sync Person to Microsoft"): whatever ``create_in_dynamics`` says.

    The original flow action creates the lead when none exists and does nothing when one does; asked for,
    the flag and the policy play no part. An existing (or ambiguous) record is never duplicated.
    """
    if match.outcome != "none":
        return CreateDecision(False, "dynamics", f"not a Marketo-only person ({match.outcome}): no create")
    return CreateDecision(True, "dynamics", SYNC_PERSON_CREATE)


def asked_for_dynamics_lead(person_fields: Mapping[str, Any], policy: SyncPolicy) -> bool:
    """Whether the person asks for a Dynamics lead under ``create_in_dynamics=flagged`` (its flag is true).

    Such a person's first link to a lead or contact that already exists is on the *create path* (docs/architecture.md
    §10): the original "Sync Person to Microsoft" does nothing to an existing lead, so the link fills blanks and
    reports differences instead of letting the authority overwrite them.
    """
    if policy.create_in_dynamics != "flagged":
        return False
    return canonical("boolean", person_fields.get(policy.create_flag_field)) is True


def decide_create_in_marketo(reverse: ReverseMatch, policy: SyncPolicy) -> CreateDecision:
    """Whether an unpaired Dynamics row becomes a new Marketo person (sync filter already applied)."""
    if reverse.outcome != "create_in_marketo":
        return CreateDecision(False, "marketo", reverse.reason)
    if not policy.create_in_marketo:
        return CreateDecision(False, "marketo", "create_in_marketo=false")
    return CreateDecision(True, "marketo", reverse.reason)


def template_placeholders(template: str) -> tuple[str, ...]:
    """The Marketo field names a subject template uses.

    Only plain named placeholders (``{firstName}``, optionally with a format spec such as ``{company:.40}``)
    are allowed: positional ``{}``/``{0}`` have nothing to bind to, and attribute or index access
    (``{a.b}``, ``{a[0]}``) would let configuration reach into Python objects.

    Raises:
        SubjectTemplateError: Naming the offending placeholder, or for unbalanced braces.
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise SubjectTemplateError(f"malformed template {template!r}: {error}") from error
    for _literal, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise SubjectTemplateError(f"positional placeholder {{{name}}}: name a Marketo field instead")
        if "." in name or "[" in name:
            raise SubjectTemplateError(f"placeholder {{{name}}}: attribute and index access are not allowed")
        names.append(name)
    return tuple(names)


def check_subject_template(template: str, marketo_fields: Collection[str]) -> list[str]:
    """Problems with a subject template, in plain words, for the start-up config check.

    Args:
        template: The ``lead_subject_template`` setting.
        marketo_fields: The Marketo REST field names the person records can carry.
    """
    try:
        names = template_placeholders(template)
    except SubjectTemplateError as error:
        return [f"lead_subject_template: {error}"]
    return [
        f"lead_subject_template: placeholder {{{name}}} is not a Marketo field"
        for name in dict.fromkeys(names)
        if name not in marketo_fields
    ]


def render_subject(template: str, person_fields: Mapping[str, Any]) -> str:
    """The ``subject`` of a lead created from a person.

    A blank value renders as nothing and runs of spaces collapse, so ``{firstName} {lastName}`` with no
    first name gives ``"Smith"`` rather than ``"None Smith"``. The result is cut to Dataverse's 300
    characters.

    Raises:
        SubjectTemplateError: Naming the placeholder when the person's record lacks that field (not a
            Marketo field, or not selected in the tap), or when the template is malformed.
    """
    values: dict[str, Any] = {}
    for name in template_placeholders(template):
        if name not in person_fields:
            raise SubjectTemplateError(
                f"lead_subject_template: placeholder {{{name}}} names a field the Marketo person record "
                "does not carry (unknown field, or not selected in tap-marketo-leads)"
            )
        value = person_fields[name]
        values[name] = "" if value is None else value
    return " ".join(template.format_map(values).split())[:SUBJECT_MAX_LENGTH]


def lead_create_payload(
    person_fields: Mapping[str, Any],
    policy: SyncPolicy,
    *,
    field_map: FieldMap = DEFAULT_FIELD_MAP,
    options: Mapping[str, OptionSet] | None = None,
    not_creatable: Collection[str] = frozenset(),
) -> dict[str, Any]:
    """The POST body of a lead created from a Marketo person (before validation).

    Every lead rule not switched off (``direction: none``) whose Marketo field is known and not blank,
    converted to Dynamics' native value, plus the ``subject`` from the template. A rule's direction governs
    *changes*; a record created from the other side starts as a full copy of the mapped fields, as Marketo's
    own "Sync Person to Microsoft" does (so a lead created from a person carries its company even though
    company changes flow Dynamics → Marketo only). Blank values are left out: a new row has nothing to clear.

    Args:
        person_fields: The person's known fields.
        policy: The settings (the subject template).
        field_map: The rules.
        options: Dynamics column → option set.
        not_creatable: Columns with ``IsValidForCreate`` false (never sent).

    Raises:
        SubjectTemplateError: When the template names a field the person lacks.
    """
    option_sets = options or {}
    payload: dict[str, Any] = {}
    for rule in field_map.rules("lead"):
        if rule.direction == "none" or rule.marketo not in person_fields or rule.dynamics in not_creatable:
            continue
        value = to_dynamics_value(rule, person_fields[rule.marketo], option_sets.get(rule.dynamics))
        if value is not None:
            payload[rule.dynamics] = value
    payload["subject"] = render_subject(policy.lead_subject_template, person_fields)
    return payload


def person_create_payload(
    row_fields: Mapping[str, Any],
    entity: Entity,
    *,
    field_map: FieldMap = DEFAULT_FIELD_MAP,
    options: Mapping[str, OptionSet] | None = None,
    marketo_read_only: Collection[str] = frozenset(),
) -> dict[str, Any]:
    """The input record of a Marketo person created from a Dynamics lead/contact (before validation).

    Every rule of the row's entity that may flow to Marketo and whose column is known and not blank,
    converted to Marketo's native value; read-only Marketo fields are never sent.
    """
    option_sets = options or {}
    payload: dict[str, Any] = {}
    for rule in field_map.rules(entity):
        if rule.direction == "none" or rule.dynamics not in row_fields or rule.marketo in marketo_read_only:
            continue
        value = to_marketo_value(rule, row_fields[rule.dynamics], option_sets.get(rule.dynamics))
        if value is not None:
            payload[rule.marketo] = value
    return payload
