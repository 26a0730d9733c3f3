"""The planner on some persons only, changed or not: the real-time path's plan (``sync/person_sync.py``).

Not a second implementation: :class:`PersonsPlanner` is the batch's :class:`~planner.Planner`, fed the given
persons instead of the dirty ones, so matching, the merge, validation, the create payload and its subject template,
tombstones and the outbox are the batch's. A *requested* pass (Marketo's "Sync Person to Microsoft", a webhook)
changes two decisions, as the original flow step does:

- a person with no lead or contact gets one whatever ``create_in_dynamics`` says (it was asked for);
- a person whose lead or contact exists is linked and nothing more: no merge, so neither record changes, and an
  ``unchanged`` activity says why. Its staged version stays unmerged, so the next batch run merges the pair by
  the create path's rules (docs/architecture.md §10: blanks filled, differences reported, nothing overwritten).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from target_mktdyn_merge.core.activity import Activity
from target_mktdyn_merge.core.matching import MatchResult
from target_mktdyn_merge.core.policies import SYNC_PERSON_EXISTS, CreateDecision, decide_requested_create
from target_mktdyn_merge.core.records import Pair, StagedRecord
from target_mktdyn_merge.core.vocabulary import PERSONS_STREAM
from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.sync.plan_batch import PlanBatch, PlanSettings
from target_mktdyn_merge.sync.planner import Planner


class PersonsPlanner(Planner):
    """The batch's planner over the given persons; ``requested``: Sync Person to Microsoft's two decisions."""

    def __init__(self, store: Store, settings: PlanSettings, *, requested: bool) -> None:
        super().__init__(store, settings)
        self.requested = requested

    def run_persons(self, person_ids: Sequence[str]) -> Counter[str]:
        """Plan these persons (their staged versions, changed or not); counts of activities by action."""
        self._begin()
        records = sorted(self.store.staged_records(PERSONS_STREAM, person_ids).values(), key=lambda r: r.record_id)
        size = self.settings.batch_size
        for start in range(0, len(records), size):
            self._person_batch(records[start : start + size])
        self._end()
        return self.counts

    def _create_decision(self, person: StagedRecord, result: MatchResult) -> CreateDecision:
        if self.requested:
            return decide_requested_create(result)
        return super()._create_decision(person, result)

    def _merge(self, person: StagedRecord, row: StagedRecord, pair: Pair, batch: PlanBatch) -> None:
        if not self.requested:
            super()._merge(person, row, pair, batch)
            return
        self.linked_only.add(person.record_id)
        if not pair.first_merge_done:
            pair.requested = True
        batch.pairs_to_save[person.record_id] = pair
        batch.activities.append(
            Activity(
                "unchanged",
                person.record_id,
                pair.entity,
                pair.dynamics_id,
                "none",
                rule=SYNC_PERSON_EXISTS.format(entity=pair.entity),
            )
        )
