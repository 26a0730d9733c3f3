"""docs/<plugin>.md is each plugin's current ``--about`` (the README links them)."""

from __future__ import annotations

import pytest

from scripts.about_docs import PLUGINS, about, path_of


@pytest.mark.parametrize("plugin", PLUGINS)
def test_about_page_is_current(plugin: str) -> None:
    assert path_of(plugin).read_text() == about(plugin), "run: .venv/bin/python scripts/about_docs.py --write"
    assert "## Settings" in path_of(plugin).read_text()
