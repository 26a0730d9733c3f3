"""Code and README cite the design as built, ``docs/architecture.md``, by sections that exist there.

Users have the repository, not the team's design notes: a reference to a document outside it (the old
"DESIGN §4") or to a section the architecture page does not have is a dead end for a reader.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CITED = re.compile(r"architecture(?:\.md)? §(\d+(?:\.\d+)?)")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.split() if name.endswith((".py", ".md", ".yml", ".toml", "Makefile"))]


def sections() -> set[str]:
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", ARCHITECTURE.read_text(), re.MULTILINE)
    return set(headings)


def test_nothing_cites_a_design_document_users_do_not_have() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_text_files()
        if path.exists()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bDESIGN\b", line) and path != Path(__file__)
    ]
    assert offenders == []


def test_every_cited_section_exists_in_the_architecture_page() -> None:
    known = sections()
    assert {"4", "8", "9.5", "10"} <= known
    missing = {
        f"{path.relative_to(ROOT)}: §{section}"
        for path in tracked_text_files()
        if path.exists()
        for section in CITED.findall(path.read_text(errors="replace"))
        if section.rstrip(".") not in known
    }
    assert missing == set()
