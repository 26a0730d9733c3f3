"""Fixtures of the target tests: the fault-free reference the fault and crash matrices compare with."""

from __future__ import annotations

import pytest

from tests.target.matrix import Reference, reference_run


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The fault-free end state of the matrices' world (computed once per test process)."""
    return reference_run(tmp_path_factory.mktemp("reference"))
