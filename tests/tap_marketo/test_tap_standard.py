"""The Singer SDK's standard tap tests against the shared sandbox (config built at import: they discover then)."""

from __future__ import annotations

from mktdyn_sandbox.testing import session_info
from singer_sdk.testing import get_tap_test_class
from tap_marketo_leads.tap import TapMarketoLeads

from .tapcli import tap_config

TestTapMarketoLeads = get_tap_test_class(TapMarketoLeads, config=tap_config(session_info()))
