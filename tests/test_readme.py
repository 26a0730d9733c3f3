"""The README is executable: every ```bash block a user is told to run runs here, literally as printed.

The blocks run in the order printed, in one bash process at the repository's root (the sandbox recipe's
variables carry into the blocks after it), so they run against the sandbox the recipe starts. A block that
cannot run here (a real tenant, a database server elsewhere, `sudo`) is preceded by
``<!-- readme-test: skip (why) -->``; an unmarked block is run, so a new one is covered as soon as it is written.

What the harness adds is the environment, never the commands: Meltano's system database and the store point
at a temporary directory, so the checkout's own `.meltano` state and `.mktdyn` store are untouched.

The `prod` environment polls Marketo's bulk exports every 60 s, as a real subscription needs; against the
sandbox (whose exports are ready at once) the harness sets ``TAP_MARKETO_LEADS_POLL_INTERVAL_SECONDS=1`` in
the environment, as a user may, instead of editing the commands.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.meltano_plugins import ROOT, install_plugins

README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None  # why, when marked


def blocks(markdown: str) -> list[Block]:
    """Every fenced block with its language and the skip marker on the line before it (blank lines allowed)."""
    lines = markdown.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = SKIP.search(before)
        found.append(
            Block(index + 1, opening["lang"], "\n".join(lines[index + 1 : end]), marker["why"] if marker else None)
        )
        index = end + 1
    return found


def shell_blocks() -> list[Block]:
    return [b for b in blocks(README.read_text()) if b.lang in ("bash", "sh", "shell", "console")]


def test_every_shell_block_is_run_or_says_why_not() -> None:
    """A block in another shell dialect, in a fence with no language or with an empty reason would silently
    escape the run below."""
    for block in blocks(README.read_text()):
        assert block.lang, f"README.md:{block.line}: name the fence's language (```bash for commands)"
    every = shell_blocks()
    assert any(b.skip is None for b in every)
    for block in every:
        assert block.lang == "bash", f"README.md:{block.line}: use ```bash for commands (```{block.lang})"
        assert block.skip is None or block.skip.strip(), f"README.md:{block.line}: say why it is skipped"


def test_the_harness_sees_markers_and_fences() -> None:
    sample = "text\n\n<!-- readme-test: skip (a real tenant) -->\n```bash\nrm -rf /\n```\n```bash\necho hi\n```\n"
    found = blocks(sample)
    assert [(b.line, b.skip, b.text) for b in found] == [(4, "a real tenant", "rm -rf /"), (7, None, "echo hi")]


def script(runnable: list[Block]) -> str:
    """One bash script: each block as printed, announced on stderr so a failure names its line."""
    parts = [
        "set -eo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",  # the sandbox the recipe starts in the background
    ]
    for block in runnable:
        parts.append(f"echo '>>> README.md:{block.line}' >&2")
        parts.append(block.text)
    return "\n".join(parts) + "\n"


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_readme_runs_as_printed(tmp_path: Path) -> None:
    runnable = [b for b in shell_blocks() if b.skip is None]
    install_plugins()  # what `make install` and `meltano install` leave behind, shared with the other tests
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MKTDYN_", "MELTANO_", "TAP_", "TARGET_"))}
    env.update(
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
        MKTDYN_STORE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        TMPDIR=str(tmp_path),
        TAP_MARKETO_LEADS_POLL_INTERVAL_SECONDS="1",
    )
    process = subprocess.Popen(
        ["bash", "-c", script(runnable)], cwd=ROOT, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the blocks' sandbox and meltano processes with it
        stdout, stderr = process.communicate()
    ran = re.findall(r">>> (README\.md:\d+)", stderr)
    assert process.returncode == 0, (
        f"the block at {ran[-1] if ran else '?'} failed ({process.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"
    )
    assert len(ran) == len(runnable)
