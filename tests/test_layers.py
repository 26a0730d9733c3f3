"""The target's layer contracts (pyproject.toml [tool.importlinter]) hold, and would catch a violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "target-mktdyn-merge" / "target_mktdyn_merge"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(pythonpath) if pythonpath else ""}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_are_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_core_module_importing_the_store_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "target_mktdyn_merge")
    (copy / "target_mktdyn_merge" / "core" / "leak.py").write_text(
        '"""A core module that reaches into the store."""\n\nfrom target_mktdyn_merge.store import database\n'
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = _lint(tmp_path, pythonpath=copy)
    assert result.returncode != 0
    assert "target_mktdyn_merge.core.leak -> target_mktdyn_merge.store.database" in result.stdout
