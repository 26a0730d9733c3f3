"""Guards of the write phase: a first production sync, or a mistake, must not change everything at once.

Modelled on key reconciliation's bounds (docs/architecture.md §10, "Losses and mass changes stop"): after
planning and before anything is sent, the writes owed are counted; past a bound the run sends nothing to
either system, leaves every planned write owed, and stops with one line saying why and how to allow it. The
next run with the guard relaxed (a higher setting, or ``allow_mass_change: true`` for that run only) sends
them; the next run with the guard unchanged stops again, since it counts what is owed, not what it planned.

- ``max_creates_in_marketo`` / ``max_creates_in_dynamics``: records one run may create in each system (the
  1,000,000-person benchmark created 379,916 Marketo persons in one run with no cap).
- ``max_change_share``: the share of pairs linked before this run that one run may update (checked past
  :data:`CHANGE_FLOOR` pairs); a wrong field map would otherwise rewrite every pair.
- ``link_only``: creates nothing in either system (planned creates stay owed until it is turned off); pairs
  are matched, linked and kept in step. The README's first-production-sync playbook uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mktdyn_common.errors import MktdynError

from target_mktdyn_merge.store.database import Store
from target_mktdyn_merge.store.outbox import established_changes, owed_by_kind

#: Up to this many changed pairs the share is not checked (a share of a handful means nothing).
CHANGE_FLOOR = 20


class WriteGuardError(MktdynError):
    """The writes owed exceed what one run may send; nothing was sent."""


@dataclass(frozen=True)
class WriteGuards:
    """The bounds of one run's write phase (settings; defaults in the settings schema only)."""

    max_creates_in_marketo: int
    max_creates_in_dynamics: int
    max_change_share: float
    allow_mass_change: bool
    link_only: bool

    def problems(self, creates: dict[str, int], changed: int, linked: int) -> list[str]:
        """What exceeds a bound: ``creates`` owed per system, ``changed`` of ``linked`` earlier pairs updated."""
        if self.allow_mass_change:
            return []
        found = []
        caps = {"marketo": self.max_creates_in_marketo, "dynamics": self.max_creates_in_dynamics}
        for system, cap in caps.items():
            if not self.link_only and creates.get(system, 0) > cap:
                found.append(f"{creates[system]} creates in {system} exceed max_creates_in_{system}={cap}")
        share = changed / linked if linked else 0.0
        if changed > CHANGE_FLOOR and share > self.max_change_share:
            found.append(
                f"{changed} of {linked} linked pairs ({share:.0%}) would change, more than "
                f"max_change_share={self.max_change_share:g}"
            )
        return found

    def check(self, store: Store, run_id: str) -> None:
        """Raise :class:`WriteGuardError` (one line) when the owed writes exceed a bound."""
        with store.transaction() as connection:
            owed = owed_by_kind(connection)
            changed, linked = established_changes(connection, run_id)
        creates = {system: n for (system, action), n in owed.items() if action == "create"}
        found = self.problems(creates, changed, linked)
        if found:
            raise WriteGuardError(
                f"write phase stopped: {'; '.join(found)}; nothing was written to either system and the writes stay "
                "owed. If this is intended, raise the setting or allow it for one run (allow_mass_change=true, e.g. "
                "TARGET_MKTDYN_MERGE_ALLOW_MASS_CHANGE=true); otherwise check the field map and `mktdyn report`"
            )
