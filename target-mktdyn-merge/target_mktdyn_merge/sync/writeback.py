"""The write phase: send every owed write to both systems, page by page, and record the outcomes.

Writes come from the outbox, where planning put them before anything was sent (docs/architecture.md §4, crash safety):
this run's plans, writes a crashed run left in doubt, and rejected writes whose retry time has come.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from tap_dynamics_leads.client import DataverseClient
from tap_marketo_leads.client import MarketoClient

from target_mktdyn_merge.core.values import now_iso
from target_mktdyn_merge.store.outbox import due_entries
from target_mktdyn_merge.sync.dynamics_writes import DynamicsWriter
from target_mktdyn_merge.sync.marketo_writes import MarketoWriter
from target_mktdyn_merge.sync.write_context import WriteContext

PAGE = 2000

logger = logging.getLogger(__name__)


def write_back(
    context: WriteContext,
    marketo: MarketoClient,
    dynamics: DataverseClient,
    dynamics_batch_size: int,
    *,
    creates: bool = True,
) -> Counter[str]:
    """Send what is owed; return counts of the outcomes' activities.

    ``creates=False`` (``link_only``) sends no create: those writes stay owed for a run that may create.
    """
    dynamics_writer = DynamicsWriter(dynamics, context, dynamics_batch_size)
    marketo_writer = MarketoWriter(marketo, context)
    started = now_iso()
    after = 0
    sent = Counter[str]()
    clock = time.monotonic()
    while True:
        with context.store.transaction() as connection:
            page = due_entries(connection, started, after, PAGE)
        if not page:
            logger.info(
                "write-back done in %.1f s: %d Dynamics and %d Marketo write(s) due",
                time.monotonic() - clock,
                sent["dynamics"],
                sent["marketo"],
            )
            return context.outcomes.counts
        sendable = [e for e in page if e.action != "activity" and (creates or e.action != "create")]
        to_dynamics = [e for e in sendable if e.system == "dynamics"]
        to_marketo = [e for e in sendable if e.system == "marketo"]
        dynamics_writer.write(to_dynamics)
        marketo_writer.write(to_marketo)
        sent.update({"dynamics": len(to_dynamics), "marketo": len(to_marketo)})
        after = page[-1].op_id
        logger.info(
            "write-back: %d Dynamics and %d Marketo write(s) handled so far (%.1f s)",
            sent["dynamics"],
            sent["marketo"],
            time.monotonic() - clock,
        )
