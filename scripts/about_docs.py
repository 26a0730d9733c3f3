"""Write each plugin's ``--about --format=markdown`` to docs/, so the README can link them.

``--write`` regenerates the files; without it, the script prints what would change. tests/test_about_docs.py
fails while a file is stale (a setting changed without regenerating).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("tap-marketo-leads", "tap-dynamics-leads", "target-mktdyn-merge")


def about(plugin: str) -> str:
    """The plugin's own markdown description of itself and its settings."""
    executable = Path(sys.executable).parent / plugin
    result = subprocess.run(
        [str(executable), "--about", "--format=markdown"], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip() + "\n"


def path_of(plugin: str) -> Path:
    """Where the plugin's page lives."""
    return ROOT / "docs" / f"{plugin}.md"


def main() -> int:
    """Regenerate (``--write``) or list the stale pages."""
    stale = [p for p in PLUGINS if not path_of(p).exists() or path_of(p).read_text() != about(p)]
    if "--write" in sys.argv:
        for plugin in stale:
            path_of(plugin).write_text(about(plugin))
    for plugin in stale:
        sys.stdout.write(f"{'updated' if '--write' in sys.argv else 'stale'}: {path_of(plugin).relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
