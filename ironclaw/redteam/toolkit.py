"""The attacker's toolkit: what the harness binds read-only at ``/opt/redteam``.

* ``ironclaw-probe``: ``probe.c`` compiled static, so it needs nothing from the image;
* ``busybox``: the static busybox, for a shell-shaped attacker;
* ``suid-busybox``: the same, owned by root with the setuid bit, to prove that setuid
  gains nothing in a sandbox (nosuid mounts, no_new_privs, a user namespace);
* ``ironclaw-hostile-db/``: with ``hostile_db=True`` (the second family), the frozen
  ``hostile_db.py``, the attacker's own SQLCipher.

Why a second frozen binary for SQLCipher, not a static C tool: the hostile schemas
need SQLCipher 4 (the queue's format) with generated columns (SQLite 3.31 or later).
Debian 12's ``libsqlcipher-dev`` is SQLCipher 3.4.1 on SQLite 3.15: it can write
neither. The project already freezes a Python program with ``sqlcipher3`` for the
agent, and it runs in the sealed image, so the attacker's tool is frozen the same way
(PyInstaller onedir, about 13 s once, then cached with the rest of the toolkit). The
image itself does not change.

Built once per content (probe source, busybox bytes, the hostile-db sources) under a
cache directory, and reachable by the sandbox's mapped root (directories 0755).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ironclaw

__all__ = ["HOSTILE_DB", "TOOLKIT_MOUNT", "ToolkitUnavailable", "build_toolkit"]

TOOLKIT_MOUNT = Path("/opt/redteam")
PROBE_SOURCE = Path(__file__).with_name("probe.c")
HOSTILE_DB_SOURCE = Path(__file__).with_name("hostile_db.py")
HOSTILE_DB_NAME = "ironclaw-hostile-db"
HOSTILE_DB = TOOLKIT_MOUNT / HOSTILE_DB_NAME / HOSTILE_DB_NAME
# What the frozen tool's content depends on besides its own source.
HOSTILE_DB_INPUTS = ("contract/cipher.py", "contract/__init__.py", "__init__.py")
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))


class ToolkitUnavailable(RuntimeError):
    """The host lacks what the toolkit is built from; the message says what."""


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ToolkitUnavailable("no static busybox: install the busybox-static package")


def _freeze_hostile_db(into: Path, work: Path) -> None:
    """PyInstaller onedir of ``hostile_db.py`` at ``into/ironclaw-hostile-db/``."""
    package_root = Path(ironclaw.__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--onedir",
            "--log-level", "WARN", "--name", HOSTILE_DB_NAME, "--distpath", str(into),
            "--workpath", str(work / "build"), "--specpath", str(work),
            "--paths", str(package_root),
            *[arg for name in ("ironclaw.host", "ironclaw.runtime", "ironclaw.cli",
                               "trio", "httpx", "pytest", "hypothesis", "tkinter")
              for arg in ("--exclude-module", name)],
            str(HOSTILE_DB_SOURCE)]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600,
                          check=False, env={**os.environ, "PYINSTALLER_CONFIG_DIR":
                                            str(work / "config")})
    if done.returncode != 0:
        raise ToolkitUnavailable(f"freezing hostile_db.py failed: {done.stderr[-800:]}")
    for path in (into, *into.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)


def build_toolkit(cache_dir: Path, *, hostile_db: bool = False) -> Path:
    """The toolkit directory for the current sources, built if needed (blocking)."""
    busybox = _busybox()
    digest = hashlib.sha256()
    digest.update(PROBE_SOURCE.read_bytes())
    digest.update(busybox.read_bytes())
    if hostile_db:
        digest.update(HOSTILE_DB_SOURCE.read_bytes())
        package = Path(ironclaw.__file__).resolve().parent
        for name in HOSTILE_DB_INPUTS:
            digest.update((package / name).read_bytes())
        digest.update(importlib.metadata.version("sqlcipher3").encode())
    target = cache_dir / f"toolkit-{digest.hexdigest()[:16]}"
    if (target / "ironclaw-probe").is_file() and (
            not hostile_db or (target / HOSTILE_DB_NAME / HOSTILE_DB_NAME).is_file()):
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ToolkitUnavailable("no C compiler: install gcc and libc6-dev")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.chmod(0o755)
    staging = Path(tempfile.mkdtemp(prefix=".toolkit-", dir=cache_dir))
    try:
        done = subprocess.run(
            [compiler, "-static", "-O1", "-o", str(staging / "ironclaw-probe"),
             str(PROBE_SOURCE)], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ToolkitUnavailable(f"compiling the probe failed: {done.stderr[-800:]}")
        if hostile_db:
            with tempfile.TemporaryDirectory(prefix="freeze-", dir=cache_dir) as work:
                _freeze_hostile_db(staging, Path(work))
        shutil.copyfile(busybox, staging / "busybox")
        shutil.copyfile(busybox, staging / "suid-busybox")
        os.chown(staging / "suid-busybox", 0, 0)
        (staging / "ironclaw-probe").chmod(0o555)
        (staging / "busybox").chmod(0o555)
        (staging / "suid-busybox").chmod(0o4755)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another harness built it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
