"""The SDK's standard tap tests against the shared sandbox, once per authentication flow."""

from __future__ import annotations

from mktdyn_sandbox.testing import session_info
from singer_sdk.testing import get_tap_test_class
from tap_dynamics_leads.tap import TapDynamicsLeads

from tests.tap_dynamics.helpers import tap_config

_INFO = session_info()

TestTapClientCredentials = get_tap_test_class(TapDynamicsLeads, config=tap_config(_INFO, "client_credentials"))
TestTapPassword = get_tap_test_class(TapDynamicsLeads, config=tap_config(_INFO, "password"))
