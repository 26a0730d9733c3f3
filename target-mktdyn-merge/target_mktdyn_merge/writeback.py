"""The write phase: send every owed write to both systems, page by page, and record the outcomes.

Writes come from the outbox, where planning put them before anything was sent (DESIGN §4, crash safety):
this run's plans, writes a crashed run left in doubt, and rejected writes whose retry time has come.
"""

from __future__ import annotations

from collections import Counter

from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.dynamics_writes import DynamicsWriter
from target_mktdyn_merge.marketo_writes import MarketoWriter
from target_mktdyn_merge.outbox import due_entries
from target_mktdyn_merge.values import now_iso
from target_mktdyn_merge.write_context import WriteContext

PAGE = 2000


def write_back(
    context: WriteContext, marketo: MarketoClient, dynamics: DataverseClient, dynamics_batch_size: int
) -> Counter[str]:
    """Send what is owed; return counts of the outcomes' activities."""
    dynamics_writer = DynamicsWriter(dynamics, context, dynamics_batch_size)
    marketo_writer = MarketoWriter(marketo, context)
    started = now_iso()
    after = 0
    while True:
        with context.store.transaction() as connection:
            page = due_entries(connection, started, after, PAGE)
        if not page:
            return context.outcomes.counts
        dynamics_writer.write([e for e in page if e.system == "dynamics" and e.action != "activity"])
        marketo_writer.write([e for e in page if e.system == "marketo" and e.action != "activity"])
        after = page[-1].op_id
