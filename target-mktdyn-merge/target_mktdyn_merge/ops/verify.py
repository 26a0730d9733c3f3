"""``mktdyn verify``: read both systems for the linked pairs and say where they disagree, and why.

The activity log says what mktdyn did; only the systems say what they hold. Verify reads the linked persons
from Marketo and their leads/contacts from Dataverse through the same clients the plugins use, compares every
mapped field after the merge's normalization (option labels, blanks, case rules of each kind), and reports each
disagreement with both values and what the store believes: the field's baseline and the pair's last activity
about the field. A disagreement is *explained* when the store already knows why:

- a write to that field (or a delete of the record) is still owed in the outbox;
- the field's last activity is ``write_ignored``, ``validation_failed``, ``write_failed``, ``deferred`` or
  ``skipped`` (blocked or frozen);
- the side that changed cannot pass its value on: the receiving side cannot write the field (read-only, or
  not updateable, in its metadata) or the mapping's direction keeps it from flowing; the ping-pong guard
  froze the field; or the baseline already holds both differing values (a divergence the sync decided to
  keep, e.g. after a blocked or ignored write) and neither side changed since;
- the field was not selected (the store never staged it on one side);
- one side changed since the last extraction (the next sync merges it);
- a record is gone and the store has seen its delete.

Anything else is *drift*: the systems hold different values and nothing in the store says so. The exit code is
1 when there is drift, else 0, so a daily ``mktdyn verify`` in a scheduler alerts on silent divergence.

Cost: reads only, batched. Marketo: one ``leads.json`` read per 300 pairs (``filterType=id``, only the mapped
fields) plus two describe calls; Dataverse: one ``$filter=Microsoft.Dynamics.CRM.In(...)`` read per 100 rows
of each entity plus the lead/contact metadata. At 100,000 pairs: 334 Marketo reads (of the 50,000 daily
calls) and about 1,000 Dataverse requests (service protection allows 6,000 per 5 minutes). Nothing is written.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient
from tap_marketo_leads.connection import MAX_BATCH

from target_mktdyn_merge.core.fieldmap import FieldMap, FieldRule
from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.normalize import canonical
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.vocabulary import DYNAMICS_STREAM, ENTITY_SET, PERSONS_STREAM
from target_mktdyn_merge.plugin.settings import merge_settings
from target_mktdyn_merge.store import schema as tables
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import OWED
from target_mktdyn_merge.store.pairs import pairs_by_person
from target_mktdyn_merge.sync.dynamics_writes import KEY
from target_mktdyn_merge.sync.engine import read_metadata

#: Last activities that explain a disagreement on the fields they name.
EXPLAINING_ACTIONS = ("write_ignored", "validation_failed", "write_failed", "deferred", "skipped")
RECORD = "(record)"


@dataclass
class Disagreement:
    """One field (or a whole record) on which the two systems disagree."""

    person_id: str
    entity: str
    dynamics_id: str
    field: str
    column: str
    marketo_value: Any
    dynamics_value: Any
    baseline: dict[str, Any] | None
    last_activity: dict[str, Any] | None
    explanation: str | None

    @property
    def drift(self) -> bool:
        """Unexplained: nothing in the store says why the systems differ."""
        return self.explanation is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "person_id": self.person_id,
            "entity": self.entity,
            "dynamics_id": self.dynamics_id,
            "field": self.field,
            "column": self.column,
            "marketo_value": self.marketo_value,
            "dynamics_value": self.dynamics_value,
            "baseline": self.baseline,
            "last_activity": self.last_activity,
            "explanation": self.explanation,
            "drift": self.drift,
        }


@dataclass
class VerifyResult:
    """What a verification found, and what it cost."""

    pairs: int = 0
    fields_compared: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    calls: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def drift(self) -> list[Disagreement]:
        """The unexplained disagreements."""
        return [d for d in self.disagreements if d.drift]

    def summary(self) -> dict[str, Any]:
        """Counts and API calls, JSON-ready."""
        return {
            "pairs": self.pairs,
            "fields_compared": self.fields_compared,
            "disagreements": len(self.disagreements),
            "explained": len(self.disagreements) - len(self.drift),
            "drift": len(self.drift),
            "api_calls": self.calls,
        }


def select_pairs(
    store: Store, *, sample: int | None = None, person: str | None = None, seed: int | None = None
) -> list[Pair]:
    """The pairs to verify: one person's, a random sample of ``sample``, or all."""
    with store.transaction() as connection:
        if person is not None:
            ids = [str(person)]
        else:
            ids = [str(i) for i in connection.execute(sa.select(tables.pairs.c.marketo_id)).scalars()]
            if sample is not None and sample < len(ids):
                ids = random.Random(seed).sample(sorted(ids), sample)
        found = pairs_by_person(connection, ids)
    return [found[i] for i in sorted(found, key=lambda x: (len(x), x))]


class Verifier:
    """Compares linked pairs as both systems hold them, 300 pairs (one Marketo read) at a time."""

    def __init__(
        self,
        store: Store,
        marketo: MarketoClient,
        dynamics: DataverseClient,
        metadata: SyncMetadata,
        field_map: FieldMap,
    ) -> None:
        self.store = store
        self.marketo = marketo
        self.dynamics = dynamics
        self.metadata = metadata
        self.field_map = field_map

    def run(self, pairs: Sequence[Pair]) -> VerifyResult:
        """Verify ``pairs``; API calls are counted in the result (reads only)."""
        result = VerifyResult(pairs=len(pairs))
        for start in range(0, len(pairs), MAX_BATCH):
            self._chunk(pairs[start : start + MAX_BATCH], result)
        result.calls = {"marketo": dict(self.marketo.calls), "dynamics": dict(self.dynamics.calls)}
        return result

    # -- reading ----------------------------------------------------------------------------------
    def _rules(self, entity: str) -> list[FieldRule]:
        return [r for r in self.field_map.rules(entity) if r.direction != "none"]

    def _marketo(self, pairs: Sequence[Pair]) -> dict[str, dict[str, Any]]:
        known = self.metadata.marketo_fields
        fields = sorted({r.marketo for e in ("lead", "contact") for r in self._rules(e) if r.marketo in known})
        return {str(p["id"]): p for p in self.marketo.get_leads("id", [int(p.marketo_id) for p in pairs], fields)}

    def _dynamics(self, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        readable = self.metadata.dynamics_attributes[entity]
        select = sorted({KEY[entity]} | {r.dynamics for r in self._rules(entity) if r.dynamics in readable})
        rows = self.dynamics.find_by_ids(ENTITY_SET[entity], KEY[entity], ids, select)
        return {str(row[KEY[entity]]).lower(): row for row in rows}

    def _owed(self, pairs: Sequence[Pair]) -> dict[str, list[dict[str, Any]]]:
        """Owed writes by person id (matched by pair, person or row id)."""
        outbox = tables.outbox
        person_of = {p.marketo_id: p.marketo_id for p in pairs} | {p.dynamics_id: p.marketo_id for p in pairs}
        by_pair = {p.pair_id: p.marketo_id for p in pairs}
        owed: dict[str, list[dict[str, Any]]] = {}
        with self.store.transaction() as connection:
            rows = connection.execute(
                sa.select(outbox.c.pair_id, outbox.c.target_id, outbox.c.action, outbox.c.status, outbox.c.payload)
                .where(outbox.c.status.in_(OWED), outbox.c.action != "activity")
                .where(sa.or_(outbox.c.pair_id.in_(list(by_pair)), outbox.c.target_id.in_(list(person_of))))
            ).all()
        for row in rows:
            person = by_pair.get(row.pair_id) or person_of.get(str(row.target_id))
            if person is not None:
                owed.setdefault(person, []).append(
                    {"action": row.action, "status": row.status, "payload": json.loads(row.payload or "{}")}
                )
        return owed

    def _last_activities(self, pairs: Sequence[Pair]) -> dict[tuple[str, str], dict[str, Any]]:
        """(person id, field or column) → the last activity naming that field."""
        log = tables.activity_log
        last: dict[tuple[str, str], dict[str, Any]] = {}
        with self.store.transaction() as connection:
            rows = connection.execute(
                sa.select(
                    log.c.activity_id,
                    log.c.person_id,
                    log.c.run_id,
                    log.c.at,
                    log.c.action,
                    log.c.direction,
                    log.c.fields,
                    log.c.rule,
                    log.c.error_message,
                )
                .where(log.c.person_id.in_([p.marketo_id for p in pairs]))
                .order_by(log.c.activity_id)
            ).all()
        for row in rows:
            summary = {
                "activity_id": row.activity_id,
                "action": row.action,
                "run_id": row.run_id,
                "at": row.at,
                "direction": row.direction,
                "rule": row.rule,
                "error_message": row.error_message,
            }
            for change in json.loads(row.fields or "[]"):
                last[(str(row.person_id), str(change.get("field")))] = summary
        return last

    # -- comparing --------------------------------------------------------------------------------
    def _chunk(self, pairs: Sequence[Pair], result: VerifyResult) -> None:
        persons = self._marketo(pairs)
        rows: dict[str, dict[str, Any]] = {}
        for entity in ("lead", "contact"):
            ids = [p.dynamics_id for p in pairs if p.entity == entity]
            if ids:
                rows.update(self._dynamics(entity, ids))
        staged_persons = self.store.staged_records(PERSONS_STREAM, [p.marketo_id for p in pairs])
        staged_rows = {
            entity: self.store.staged_records(
                DYNAMICS_STREAM[entity], [p.dynamics_id for p in pairs if p.entity == entity]
            )
            for entity in ("lead", "contact")
        }
        owed = self._owed(pairs)
        last = self._last_activities(pairs)
        for pair in pairs:
            person = persons.get(pair.marketo_id)
            row = rows.get(pair.dynamics_id.lower())
            staged_person = staged_persons.get(pair.marketo_id)
            staged_row = staged_rows[pair.entity].get(pair.dynamics_id)
            if person is None or row is None:
                result.disagreements.append(self._missing(pair, person, row, staged_person, staged_row, owed))
                continue
            for rule in self._rules(pair.entity):
                if rule.marketo not in self.metadata.marketo_fields:
                    continue  # not in Marketo's metadata: the field map check reports that
                if rule.dynamics not in self.metadata.dynamics_attributes[pair.entity]:
                    continue
                result.fields_compared += 1
                options = self.metadata.options(pair.entity).get(rule.dynamics)
                marketo_value = canonical(rule.kind, person.get(rule.marketo), options)
                dynamics_value = canonical(rule.kind, row.get(rule.dynamics), options)
                if marketo_value == dynamics_value:
                    continue
                named = [last.get((pair.marketo_id, rule.marketo)), last.get((pair.marketo_id, rule.dynamics))]
                activity = max((a for a in named if a), key=lambda a: int(a["activity_id"]), default=None)
                baseline = pair.baseline.get(rule.marketo)
                result.disagreements.append(
                    Disagreement(
                        pair.marketo_id,
                        pair.entity,
                        pair.dynamics_id,
                        rule.marketo,
                        rule.dynamics,
                        person.get(rule.marketo),
                        row.get(rule.dynamics),
                        baseline.to_dict() if baseline is not None else None,
                        activity,
                        self._explain(
                            pair,
                            rule,
                            (marketo_value, dynamics_value),
                            (staged_person, staged_row),
                            owed.get(pair.marketo_id, []),
                            activity,
                        ),
                    )
                )

    def _missing(
        self,
        pair: Pair,
        person: Mapping[str, Any] | None,
        row: Mapping[str, Any] | None,
        staged_person: StagedRecord | None,
        staged_row: StagedRecord | None,
        owed: Mapping[str, list[dict[str, Any]]],
    ) -> Disagreement:
        gone = "Marketo person" if person is None else f"Dynamics {pair.entity}"
        staged = staged_person if person is None else staged_row
        explanation = None
        if staged is not None and staged.deleted:
            explanation = f"the {gone} is deleted and the store has staged its delete"
        elif any(w["action"] in ("delete", "flag") for w in owed.get(pair.marketo_id, [])):
            explanation = "a delete (or delete flag) is owed in the outbox"
        return Disagreement(
            pair.marketo_id,
            pair.entity,
            pair.dynamics_id,
            RECORD,
            RECORD,
            "(missing)" if person is None else "(exists)",
            "(missing)" if row is None else "(exists)",
            None,
            None,
            explanation,
        )

    def _explain(
        self,
        pair: Pair,
        rule: FieldRule,
        live: tuple[Any, Any],
        staged: tuple[StagedRecord | None, StagedRecord | None],
        owed: Iterable[dict[str, Any]],
        activity: Mapping[str, Any] | None,
    ) -> str | None:
        staged_person, staged_row = staged
        if staged_person is None or rule.marketo not in staged_person.fields:
            return f"Marketo's {rule.marketo} is not selected (never staged): not compared by the sync"
        if staged_row is None or rule.dynamics not in staged_row.fields:
            return f"Dynamics' {rule.dynamics} is not selected (never staged): not compared by the sync"
        for write in owed:
            if (
                write["action"] in ("delete", "flag")
                or rule.marketo in write["payload"]
                or (rule.dynamics in write["payload"])
            ):
                return f"the outbox still owes this write ({write['action']}, {write['status']})"
        guard = pair.guards.get(rule.marketo)
        if guard is not None and guard.frozen:
            return f"frozen by the ping-pong guard since run {guard.frozen_at_run}"
        baseline = pair.baseline.get(rule.marketo)
        marketo_changed = baseline is None or live[0] != baseline.marketo
        dynamics_changed = baseline is None or live[1] != baseline.dynamics
        if dynamics_changed and not rule.flows_to("marketo"):
            return f"the mapping's direction is {rule.direction}: Dynamics' change does not flow to Marketo"
        if marketo_changed and not rule.flows_to("dynamics"):
            return f"the mapping's direction is {rule.direction}: Marketo's change does not flow to Dynamics"
        if dynamics_changed and rule.marketo in self.metadata.marketo_read_only:
            return f"Marketo cannot write {rule.marketo} through leads.json (its describe/describe2 metadata)"
        if marketo_changed and rule.dynamics in self.metadata.dynamics_not_updatable(pair.entity):
            return f"Dynamics cannot update {rule.dynamics} (IsValidForUpdate false)"
        if activity is not None and activity["action"] in EXPLAINING_ACTIONS:
            return f"last activity: {activity['action']} ({activity.get('error_message') or activity.get('rule')})"
        if baseline is not None and live == (baseline.marketo, baseline.dynamics):
            return "a known divergence: the baseline holds both values and neither side changed since"
        options = self.metadata.options(pair.entity).get(rule.dynamics)
        if canonical(rule.kind, staged_person.fields.get(rule.marketo), options) != live[0]:
            return "Marketo changed since the last extraction: the next sync merges it"
        if canonical(rule.kind, staged_row.fields.get(rule.dynamics), options) != live[1]:
            return "Dynamics changed since the last extraction: the next sync merges it"
        return None


def run_verify(
    config: Mapping[str, Any],
    store: Store,
    *,
    sample: int | None = None,
    person: str | None = None,
    seed: int | None = None,
) -> VerifyResult:
    """Verify the store's pairs (all, a sample, or one person) against both systems, reading only."""
    settings = merge_settings(config)
    field_map = settings.field_map
    marketo = MarketoClient(settings.marketo_connection())
    dynamics = DataverseClient(settings.dynamics_connection())
    try:
        metadata = read_metadata(marketo, dynamics)
        pairs = select_pairs(store, sample=sample, person=person, seed=seed)
        return Verifier(store, marketo, dynamics, metadata, field_map).run(pairs)
    finally:
        marketo.close()
        dynamics.close()
