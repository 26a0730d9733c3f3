"""Fixtures shared across the suite: the store backends (see tests/store_backends.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store_backends import BACKENDS, fresh_store_url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh store per test, on each backend."""
    with fresh_store_url(request.param, tmp_path_factory.mktemp("store")) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh store shared by one module's tests (for module-scoped worlds), on each backend."""
    with fresh_store_url(request.param, tmp_path_factory.mktemp("store")) as url:
        yield url
