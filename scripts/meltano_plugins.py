"""The plugins' virtualenvs: installed once by ``meltano install``, shared by every throwaway Meltano directory.

meltano.yml installs each plugin from this checkout (``pip_url: -e ${MELTANO_PROJECT_ROOT}/...``) into
``.meltano/<type>/<plugin>/venv``. The demo, the end-to-end tests and the benchmarks give each run its own
``MELTANO_SYS_DIR_ROOT`` (Meltano writes its run files there under fixed names, so two runs sharing one would
overwrite each other's configuration); installing the plugins into each of those would cost about 10 s apiece.
So the plugins are installed once, into the project's own ``.meltano``, and each throwaway directory links to
those virtualenvs. The installs are editable: a change to the code needs no reinstall, a change to a
``pyproject.toml`` or a ``pip_url`` triggers one.

Everything is installed with its bytecode compiled (``UV_COMPILE_BYTECODE``, and ``compileall`` for this
checkout's editable sources). Without it, a machine or worker image that sets ``PYTHONDONTWRITEBYTECODE`` (as
this workspace and many Dockerfiles do) compiles every imported module at every process start: about 1 s per
plugin process, six per ``meltano run sync``, most of a quiet run (docs/architecture.md §7).
"""

from __future__ import annotations

import compileall
import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SYS_DIR = ROOT / ".meltano"
PLUGIN_TYPES = ("extractors", "loaders", "utilities")
#: This checkout's packages, installed editable: their bytecode lives next to their sources.
SOURCES = ("mktdyn-common", "tap-marketo-leads", "tap-dynamics-leads", "target-mktdyn-merge", "sandbox")
MELTANO = str(Path(sys.executable).parent / "meltano")


def _fingerprint() -> str:
    """What the installed virtualenvs depend on: every pip_url and every package's pyproject.toml."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    digest = hashlib.sha256(sys.executable.encode())
    digest.update(b"bytecode compiled at install (2)\n")  # installs made before that are redone
    for group in project["plugins"].values():
        for plugin in group:
            digest.update(f"{plugin['name']}={plugin.get('pip_url', '')}\n".encode())
    for pyproject in sorted(ROOT.glob("*/pyproject.toml")):
        digest.update(pyproject.read_bytes())
    return digest.hexdigest()


def _venvs_present() -> bool:
    """Every plugin with its own pip_url has its virtualenv and executable (an install may have been cut short)."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return all(
        (SYS_DIR / plugin_type / plugin["name"] / "venv" / "bin" / plugin.get("executable", plugin["name"])).exists()
        for plugin_type, group in project["plugins"].items()
        for plugin in group
        if plugin.get("pip_url") and "inherit_from" not in plugin
    )


def install_plugins() -> None:
    """``meltano install`` into the project's ``.meltano``, unless nothing it installs has changed since.

    Serialised by a lock on a file: pytest-xdist workers ask at the same time.
    """
    SYS_DIR.mkdir(exist_ok=True)
    stamp = SYS_DIR / "mktdyn-plugins.sha256"
    with (SYS_DIR / "mktdyn-plugins.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fingerprint = _fingerprint()
        if stamp.exists() and stamp.read_text() == fingerprint and _venvs_present():
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_")}
        env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
        env["UV_COMPILE_BYTECODE"] = "1"  # Meltano's uv backend installs with the plugins' bytecode compiled
        result = subprocess.run(
            [MELTANO, "install"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"meltano install failed ({result.returncode}):\n{result.stderr[-4000:]}")
        # uv compiles what it installs; packages an earlier install left in place are compiled here.
        for venv in sorted(SYS_DIR.glob("*/*/venv")):
            compileall.compile_dir(venv / "lib", quiet=1, workers=0)
        stamp.write_text(fingerprint)


def compile_sources() -> None:
    """Compile the editable sources' bytecode (files already compiled and unchanged are skipped)."""
    for source in SOURCES:
        if not compileall.compile_dir(ROOT / source, quiet=1, workers=0):
            raise RuntimeError(f"compiling {source} failed")


def use_installed_plugins(sys_dir: Path) -> None:
    """Make the Meltano system directory ``sys_dir`` run the plugins installed by :func:`install_plugins`."""
    install_plugins()
    sys_dir.mkdir(parents=True, exist_ok=True)
    for plugin_type in PLUGIN_TYPES:
        link = sys_dir / plugin_type
        if not link.exists():
            link.symlink_to(SYS_DIR / plugin_type, target_is_directory=True)


if __name__ == "__main__":
    install_plugins()
    compile_sources()
