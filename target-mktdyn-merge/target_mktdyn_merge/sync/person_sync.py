"""The sync of some persons now: the real-time path (``mktdyn serve``) and ``mktdyn sync --person``.

Nothing here decides anything the batch does not decide the same way (docs/architecture.md §10): the persons and
their Dynamics candidates are read and staged (``person_reads``), the batch's planner runs on just those persons
(matching, merge, validation, the create payload and its subject template), the batch's write phase sends what
the planner put in the outbox and logs the outcomes, and the custom activities are posted as a run posts them.
Two kinds of request differ only in what the planner is asked:

- ``sync_person`` (Marketo's "Sync Person to Microsoft"): a person with no lead or contact gets a lead, whatever
  ``create_in_dynamics`` says; a person whose lead or contact exists is linked and nothing else happens to either
  record (the activity says why); the next batch merges the pair by the create path's rules.
- ``full_sync``: the two-way merge of one person and its lead/contact by the batch's rules, now.

The caller holds the store's write lock, so this is ordered against every batch run like any other run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.core.metadata import SyncMetadata
from target_mktdyn_merge.core.vocabulary import FAILURE_ACTIONS, RequestKind
from target_mktdyn_merge.store.activity_log import iter_activities
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.pairs import pairs_by_person
from target_mktdyn_merge.sync.engine import write_planned
from target_mktdyn_merge.sync.freshness import refresh_stale
from target_mktdyn_merge.sync.merge_settings import MergeSettings
from target_mktdyn_merge.sync.person_reads import ReadScope, stage_candidates, stage_persons
from target_mktdyn_merge.sync.plan_requested import PersonsPlanner
from target_mktdyn_merge.sync.planner import PlanSettings, merge_run_number

#: HTTP status of each outcome: a 2xx lets Marketo's response mappings store the Dynamics id; anything the
#: admin must look at is not a 2xx, so Marketo logs the call as failed on the person.
HTTP_STATUS = {
    "created": 200,
    "exists": 200,
    "synced": 200,
    "would_create": 200,
    "not_linked": 200,
    "not_found": 404,
    "ambiguous": 409,
    "skipped": 200,
    "failed": 422,
}


@dataclass(frozen=True)
class PersonAnswer:
    """What a request did for one person: the answer its caller gets (JSON) and the run's activity says."""

    person_id: str
    outcome: str
    entity: str | None = None
    dynamics_id: str | None = None
    reason: str = ""
    dry_run: bool = False

    @property
    def http_status(self) -> int:
        """The status a webhook answer carries (2xx only when there is nothing to look at)."""
        return HTTP_STATUS[self.outcome]

    def to_json(self) -> dict[str, Any]:
        """The answer body: ``dynamicsLeadId`` / ``dynamicsContactId`` are what response mappings store."""
        body: dict[str, Any] = {
            "personId": self.person_id,
            "status": self.outcome,
            "entity": self.entity,
            "dynamicsId": self.dynamics_id,
            "reason": self.reason,
            "dryRun": self.dry_run,
        }
        if self.dynamics_id and self.entity == "lead":
            body["dynamicsLeadId"] = self.dynamics_id
        if self.dynamics_id and self.entity == "contact":
            body["dynamicsContactId"] = self.dynamics_id
        return body


@dataclass(frozen=True)
class PersonSync:
    """One pass over some persons: the settings, the systems' metadata (read once per worker) and the clients."""

    store: Store
    settings: MergeSettings
    metadata: SyncMetadata
    marketo: MarketoClient
    dynamics: DataverseClient
    logger: logging.Logger

    def run(self, run_id: str, kind: RequestKind, person_ids: Sequence[str], dry_run: bool) -> dict[str, PersonAnswer]:
        """Sync these persons under ``run_id``; one answer per id (a person Marketo does not have: ``not_found``)."""
        wanted = sorted(set(person_ids))
        scope = ReadScope(self.settings.field_map, self.metadata)
        if not dry_run:
            refresh_stale(self.store, run_id, self.marketo, self.dynamics, self.logger)
        present = stage_persons(self.store, run_id, wanted, scope, self.marketo)
        looked_up = stage_candidates(self.store, run_id, sorted(present), scope, self.dynamics)
        plan = PlanSettings(
            run_id=run_id,
            run_number=merge_run_number(self.store),
            dry_run=dry_run,
            field_map=self.settings.field_map,
            policy=self.settings.policy,
            metadata=self.metadata,
            sync_filter_field=self.settings.sync_filter_field,
        )
        PersonsPlanner(self.store, plan, requested=kind == "sync_person").run_persons(sorted(present))
        if not dry_run:
            write_planned(self.store, self.settings, plan, self.marketo, self.dynamics, looked_up)
        found = answers(self.store, run_id, kind, sorted(present), dry_run)
        missing = {
            person_id: PersonAnswer(
                person_id, "not_found", reason=f"Marketo has no person {person_id}", dry_run=dry_run
            )
            for person_id in wanted
            if person_id not in present
        }
        return {**found, **missing}


def answers(
    store: Store, run_id: str, kind: RequestKind, person_ids: Sequence[str], dry_run: bool
) -> dict[str, PersonAnswer]:
    """Each person's answer, from what the run logged for it and the link the store now holds."""
    wanted = set(person_ids)
    logged: dict[str, list[Mapping[str, Any]]] = {}
    for item in iter_activities(store, run_id):
        if item["person_id"] in wanted:
            logged.setdefault(str(item["person_id"]), []).append(item)
    with store.transaction() as connection:
        pairs = pairs_by_person(connection, wanted)
    result: dict[str, PersonAnswer] = {}
    for person_id in person_ids:
        pair = pairs.get(person_id)
        entity, dynamics_id = (pair.entity, pair.dynamics_id) if pair is not None else (None, None)
        result[person_id] = _answer(person_id, kind, logged.get(person_id, []), entity, dynamics_id, dry_run)
    return result


def _answer(
    person_id: str,
    kind: RequestKind,
    items: list[Mapping[str, Any]],
    entity: str | None,
    dynamics_id: str | None,
    dry_run: bool,
) -> PersonAnswer:
    """The outcome the log shows, the worst first: a failure, an ambiguity, a create, a skip, a link."""
    by_action = {str(i["action"]): i for i in items}
    failure = next((i for i in items if i["action"] in FAILURE_ACTIONS), None)
    if failure is not None:
        reason = str(failure.get("error_message") or failure.get("rule") or failure["action"])
        return PersonAnswer(person_id, "failed", entity, dynamics_id, reason, dry_run)
    if "ambiguous_match" in by_action:
        return PersonAnswer(
            person_id, "ambiguous", None, None, str(by_action["ambiguous_match"].get("rule") or ""), dry_run
        )
    created = next((i for i in items if i["action"] == "created" and i["direction"] == "to_dynamics"), None)
    if created is not None:
        if dry_run:
            return PersonAnswer(person_id, "would_create", "lead", None, str(created.get("rule") or ""), dry_run)
        return PersonAnswer(
            person_id,
            "created",
            entity or "lead",
            dynamics_id or created.get("dynamics_id"),
            str(created.get("rule") or ""),
            dry_run,
        )
    if dynamics_id is None and "skipped" in by_action:
        return PersonAnswer(person_id, "skipped", None, None, str(by_action["skipped"].get("rule") or ""), dry_run)
    if dynamics_id is None:
        reason = "no lead or contact is linked and none was created (see the activity log)"
        return PersonAnswer(person_id, "not_linked", None, None, reason, dry_run)
    rules = [str(i.get("rule")) for i in items if i.get("rule")]
    outcome = "exists" if kind == "sync_person" else "synced"
    return PersonAnswer(person_id, outcome, entity, dynamics_id, "; ".join(rules), dry_run)
