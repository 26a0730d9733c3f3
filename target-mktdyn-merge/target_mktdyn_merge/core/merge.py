"""The three-way, field-by-field merge of one Marketo person with its Dynamics lead or contact.

docs/architecture.md §4, per field, after normalization: equal → in sync; only Marketo changed since the baseline → to
Dynamics; only Dynamics changed → to Marketo; both changed (or no baseline yet and the values differ) → a
*collision*, which the authority decides (Marketo for leads, Dynamics for contacts, or a per-field
override); on a first link a blank never overwrites a value; a side never receives a field it cannot
write. The baseline is kept *per side* (what each system last stored), so a value one system stores
differently from what we sent (truncated, reformatted) is a stable divergence, not a change.

Everything here is pure: plain data in, plain data out; the run number stands in for the clock.

Outcomes of a field (``FieldDecision.outcome``):

==============  ==========================================================================================
``in_sync``      equal after normalization; no write.
``to_dynamics``  Marketo's value is written to Dynamics (a change, a collision won by Marketo, or the
                 first-link blank rule).
``to_marketo``   Dynamics' value is written to Marketo.
``stable``       the values differ but neither side changed since its baseline; no write.
``blocked``      a change should flow but may not: the field's direction forbids it, or the receiving side
                 cannot write the field (read-only in its metadata). Reported, not written.
``frozen``       the ping-pong guard froze the field (see ``GuardPolicy``); no write until cleared.
``unknown``      a side did not send the field (not selected): neither compared nor written.
``kept``         a first link on the create path (``PairInput.create_path``) found two different values:
                 each side keeps its own, the difference is reported, and the baseline takes both as they
                 are so that only later changes flow.
==============  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from target_mktdyn_merge.core.baseline import (
    BaselineEntry,
)
from target_mktdyn_merge.core.fieldmap import DEFAULT_FIELD_MAP, FieldMap, FieldRule
from target_mktdyn_merge.core.guards import FieldGuard, GuardPolicy, _guard_step
from target_mktdyn_merge.core.normalize import (
    Canonical,
    OptionSet,
    canonical,
    is_blank,
    to_dynamics_value,
    to_marketo_value,
)
from target_mktdyn_merge.core.vocabulary import ENTITY_AUTHORITY, Entity, Side, WriteDirection

Outcome = Literal["in_sync", "to_dynamics", "to_marketo", "stable", "blocked", "frozen", "unknown", "kept"]
"""What the merge decided for one field (table in the module docstring)."""


_SIDE_NAME: Mapping[str, str] = {"marketo": "Marketo", "dynamics": "Dynamics"}
FIRST_LINK_BLANK_RULE = "first link: a blank never overwrites a value"
NO_BASELINE_BLANK_RULE = "no baseline for this field: a blank never overwrites a value"
CREATE_PATH_BLANK_RULE = "first link on the create path: a blank is filled from the other side"
CREATE_PATH_KEPT_RULE = (
    "first link on the create path: each side keeps its value (docs/architecture.md §10); later changes flow"
)


@dataclass(frozen=True)
class PairInput:
    """Everything the merge of one pair needs, as plain data.

    Attributes:
        entity: ``lead`` or ``contact``: which rules apply and who the default authority is.
        marketo: The person's known fields (REST names → staged values). A missing key means *unknown*
            (not extracted), never blank: such a field is neither compared nor written.
        dynamics: The lead/contact row's known fields (column → staged value), same convention.
        run_number: The sync run's sequence number (monotonic); the guard's clock.
        baseline: Marketo field name → per-side canonical values last confirmed stored; a field without an
            entry has no baseline yet.
        first_link: The pair was linked in this run: any baseline is ignored and a blank never overwrites
            a value.
        options: Dynamics column → its option set (needed for every ``option`` rule: without it an option
            value compares as its number and never equals Marketo's label).
        marketo_read_only: Marketo fields the person cannot be written through (readOnly in describe).
        dynamics_read_only: Dynamics columns the row cannot be written (IsValidForUpdate false; every
            column of a qualified/disqualified lead).
        field_map: The rules.
        guards: Marketo field name → ping-pong guard state from the previous runs.
        create_path: The first link was made on the create path (a person asked for a Dynamics lead, the
            "Sync Person to Microsoft" analogue, and one already existed): with ``first_link``, blanks are
            filled from the other side and differing values are ``kept``, never overwritten (docs/architecture.md §10).
        authority_override: The pair's authority when it differs from the entity's default (a lead
            qualified into a contact: Dynamics). Per-field rule authorities still take precedence.
        guard_policy: The ping-pong rule's parameters.
    """

    entity: Entity
    marketo: Mapping[str, Any]
    dynamics: Mapping[str, Any]
    run_number: int
    baseline: Mapping[str, BaselineEntry] = field(default_factory=dict)
    first_link: bool = False
    options: Mapping[str, OptionSet] = field(default_factory=dict)
    marketo_read_only: frozenset[str] = frozenset()
    dynamics_read_only: frozenset[str] = frozenset()
    field_map: FieldMap = DEFAULT_FIELD_MAP
    guards: Mapping[str, FieldGuard] = field(default_factory=dict)
    authority_override: Side | None = None
    guard_policy: GuardPolicy = field(default_factory=GuardPolicy)
    create_path: bool = False


@dataclass(frozen=True)
class FieldDecision:
    """What the merge decided for one field, with the why, for the activity log.

    Attributes:
        field: The Marketo field name.
        column: The Dynamics column.
        outcome: See the module docstring.
        marketo_value: Marketo's value as staged (None when unknown).
        dynamics_value: Dynamics' value as staged (None when unknown).
        marketo_canonical: Marketo's value, canonical.
        dynamics_canonical: Dynamics' value, canonical.
        winner: The side whose value is (or would be, if not blocked/frozen) kept; None when there is
            nothing to decide (in sync, stable, unknown).
        rule: The reason in words ("lead: Marketo is the authority", "field override: authority=dynamics",
            "first link: a blank never overwrites a value", ...).
        collision: Both sides changed since the baseline, or there is no baseline and the values differ.
        written_value: The native value planned for the receiving side (outcomes to_dynamics/to_marketo).
        mapping: The field's rule.
    """

    field: str
    column: str
    outcome: Outcome
    marketo_value: Any
    dynamics_value: Any
    marketo_canonical: Canonical
    dynamics_canonical: Canonical
    winner: Side | None
    rule: str
    collision: bool
    written_value: Any
    mapping: FieldRule

    @property
    def writes(self) -> bool:
        """Whether this decision plans a write."""
        return self.outcome in {"to_dynamics", "to_marketo"}


@dataclass(frozen=True)
class MergeResult:
    """The merge of one pair.

    Attributes:
        entity: The pair's entity.
        decisions: One decision per rule of the entity, in map order.
        to_dynamics: Column → native value to PATCH on the Dynamics row.
        to_marketo: Field → native value to send for the Marketo person.
        guards: The guard state to persist if (and only if) the planned writes are sent; every field that
            has guard state is included.
    """

    entity: Entity
    decisions: tuple[FieldDecision, ...]
    to_dynamics: Mapping[str, Any]
    to_marketo: Mapping[str, Any]
    guards: Mapping[str, FieldGuard]

    @property
    def collisions(self) -> tuple[FieldDecision, ...]:
        """The decisions that were collisions, however they were resolved."""
        return tuple(decision for decision in self.decisions if decision.collision)

    @property
    def has_writes(self) -> bool:
        """Whether anything is to be written to either side."""
        return bool(self.to_dynamics or self.to_marketo)

    def decision(self, marketo_field: str) -> FieldDecision:
        """The decision for a Marketo field (KeyError if the entity does not map it)."""
        for decision in self.decisions:
            if decision.field == marketo_field:
                return decision
        raise KeyError(marketo_field)


def effective_authority(rule: FieldRule, entity: str, authority_override: Side | None = None) -> tuple[Side, str]:
    """Who wins a collision on this field, and the rule in words.

    Precedence, most specific first: the rule's own ``authority``; then a one-way ``direction`` (its only
    source side wins, otherwise every collision on a one-way field would be blocked forever); then the
    pair's ``authority_override``; then the entity's default.
    """
    if rule.authority is not None:
        return rule.authority, f"field override: authority={rule.authority}"
    if rule.direction == "to_marketo":
        return "dynamics", "direction to_marketo: Dynamics is the field's only source"
    if rule.direction == "to_dynamics":
        return "marketo", "direction to_dynamics: Marketo is the field's only source"
    if authority_override is not None:
        return authority_override, f"pair override: {_SIDE_NAME[authority_override]} is the authority"
    default = ENTITY_AUTHORITY[entity]
    return default, f"{entity}: {_SIDE_NAME[default]} is the authority"


def merge_pair(pair: PairInput) -> MergeResult:
    """Merge one pair, field by field, against its baseline.

    Re-merging within the same run (after a 412 or a Marketo re-read) must start again from the guards
    stored *before* the run, not from a previous result's, so that one run counts once.

    Args:
        pair: The pair's values, baseline, metadata and guard state.

    Returns:
        The decisions, the two payloads and the new guard state.
    """
    decisions: list[FieldDecision] = []
    to_dynamics: dict[str, Any] = {}
    to_marketo: dict[str, Any] = {}
    guards: dict[str, FieldGuard] = dict(pair.guards)
    for rule in pair.field_map.rules(pair.entity):
        decision, guard = _decide(rule, pair)
        decisions.append(decision)
        if guard is not None:
            guards[rule.marketo] = guard
        if decision.outcome == "to_dynamics":
            to_dynamics[rule.dynamics] = decision.written_value
        elif decision.outcome == "to_marketo":
            to_marketo[rule.marketo] = decision.written_value
    return MergeResult(
        entity=pair.entity,
        decisions=tuple(decisions),
        to_dynamics=to_dynamics,
        to_marketo=to_marketo,
        guards=guards,
    )


@dataclass(frozen=True)
class _FieldValues:
    """One field's values on both sides, as sent (raw) and as compared (canonical)."""

    rule: FieldRule
    marketo_known: bool
    dynamics_known: bool
    marketo_raw: Any
    dynamics_raw: Any
    marketo: Canonical
    dynamics: Canonical

    @classmethod
    def read(cls, rule: FieldRule, pair: PairInput) -> _FieldValues:
        options = pair.options.get(rule.dynamics)
        marketo_known = rule.marketo in pair.marketo
        dynamics_known = rule.dynamics in pair.dynamics
        marketo_raw = pair.marketo.get(rule.marketo)
        dynamics_raw = pair.dynamics.get(rule.dynamics)
        return cls(
            rule,
            marketo_known,
            dynamics_known,
            marketo_raw,
            dynamics_raw,
            canonical(rule.kind, marketo_raw, options) if marketo_known else None,
            canonical(rule.kind, dynamics_raw, options) if dynamics_known else None,
        )

    def decided(
        self, outcome: Outcome, words: str, winner: Side | None = None, *, collision: bool = False, written: Any = None
    ) -> FieldDecision:
        return FieldDecision(
            field=self.rule.marketo,
            column=self.rule.dynamics,
            outcome=outcome,
            marketo_value=self.marketo_raw,
            dynamics_value=self.dynamics_raw,
            marketo_canonical=self.marketo,
            dynamics_canonical=self.dynamics,
            winner=winner,
            rule=words,
            collision=collision,
            written_value=written,
            mapping=self.rule,
        )


@dataclass(frozen=True)
class _Verdict:
    """Who wins a field that differs, why, and whether both sides changed it (a collision)."""

    winner: Side
    words: str
    collision: bool


def _decide(rule: FieldRule, pair: PairInput) -> tuple[FieldDecision, FieldGuard | None]:
    """Decide one field; also return its new guard state when a write was considered."""
    values = _FieldValues.read(rule, pair)
    if not (values.marketo_known and values.dynamics_known):
        missing = " and ".join(
            name
            for name, known in (("Marketo", values.marketo_known), ("Dynamics", values.dynamics_known))
            if not known
        )
        return values.decided("unknown", f"{missing} did not send the field: not compared, not written"), None
    if values.marketo == values.dynamics:
        return values.decided("in_sync", "equal after normalization"), None
    verdict = _verdict(rule, pair, values)
    if isinstance(verdict, FieldDecision):
        return verdict, None
    return _flow(rule, pair, values, verdict)


def _verdict(rule: FieldRule, pair: PairInput, values: _FieldValues) -> _Verdict | FieldDecision:
    """Who wins a field whose values differ: by the baseline, else blank-fills-blank, else the authority."""
    baseline = None if pair.first_link else pair.baseline.get(rule.marketo)
    if baseline is not None:
        marketo_changed = values.marketo != baseline.marketo
        dynamics_changed = values.dynamics != baseline.dynamics
        if not marketo_changed and not dynamics_changed:
            return values.decided("stable", "neither side changed since the baseline: each keeps what it stored")
        if marketo_changed and not dynamics_changed:
            return _Verdict("marketo", "only Marketo changed since the baseline", collision=False)
        if dynamics_changed and not marketo_changed:
            return _Verdict("dynamics", "only Dynamics changed since the baseline", collision=False)
        return _Verdict(*effective_authority(rule, pair.entity, pair.authority_override), collision=True)
    create_path = pair.first_link and pair.create_path
    if is_blank(values.marketo) != is_blank(values.dynamics):
        winner: Side = "dynamics" if is_blank(values.marketo) else "marketo"
        if create_path:
            return _Verdict(winner, CREATE_PATH_BLANK_RULE, collision=True)
        return _Verdict(winner, FIRST_LINK_BLANK_RULE if pair.first_link else NO_BASELINE_BLANK_RULE, collision=True)
    if create_path:
        return values.decided("kept", CREATE_PATH_KEPT_RULE)
    return _Verdict(*effective_authority(rule, pair.entity, pair.authority_override), collision=True)


def _flow(
    rule: FieldRule, pair: PairInput, values: _FieldValues, verdict: _Verdict
) -> tuple[FieldDecision, FieldGuard | None]:
    """Write the winner's value to the other side, unless the map, metadata or ping-pong guard forbids it."""
    winner, words, collision = verdict.winner, verdict.words, verdict.collision
    receiver: Side = "dynamics" if winner == "marketo" else "marketo"
    direction: WriteDirection = "to_dynamics" if receiver == "dynamics" else "to_marketo"
    if not rule.flows_to(receiver):
        why = f"direction {rule.direction}: {_SIDE_NAME[winner]} values do not flow to {_SIDE_NAME[receiver]}"
        return values.decided("blocked", f"{words}; {why}", winner, collision=collision), None
    read_only = pair.dynamics_read_only if receiver == "dynamics" else pair.marketo_read_only
    target_name = rule.dynamics if receiver == "dynamics" else rule.marketo
    if target_name in read_only:
        why = f"{_SIDE_NAME[receiver]} cannot write {target_name} (not writable in its metadata)"
        return values.decided("blocked", f"{words}; {why}", winner, collision=collision), None
    guard = pair.guards.get(rule.marketo, FieldGuard())
    policy = pair.guard_policy
    if guard.frozen:
        why = f"ping-pong guard: frozen since run {guard.frozen_at_run} until `mktdyn resync --field {rule.marketo}`"
        return values.decided("frozen", f"{words}; {why}", winner, collision=collision), None
    new_guard = _guard_step(guard, direction, pair.run_number, policy)
    if new_guard.frozen:
        why = (
            f"ping-pong guard: {len(new_guard.reversal_runs)} direction reversals within "
            f"{policy.window_runs} runs, frozen until `mktdyn resync --field {rule.marketo}`"
        )
        return values.decided("frozen", f"{words}; {why}", winner, collision=collision), new_guard
    options = pair.options.get(rule.dynamics)
    if receiver == "dynamics":
        written = to_dynamics_value(rule, values.marketo_raw, options)
    else:
        written = to_marketo_value(rule, values.dynamics_raw, options)
    return values.decided(direction, words, winner, collision=collision, written=written), new_guard
