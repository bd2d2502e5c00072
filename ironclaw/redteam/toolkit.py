"""The attacker's toolkit: what the harness binds read-only at ``/opt/redteam``.

* ``ironclaw-probe``: ``probe.c`` compiled static, so it needs nothing from the image;
* ``busybox``: the static busybox, for a shell-shaped attacker;
* ``suid-busybox``: the same, owned by root with the setuid bit, to prove that setuid
  gains nothing in a sandbox (nosuid mounts, no_new_privs, a user namespace).

Built once per content (probe source and busybox bytes) under a cache directory, and
reachable by the sandbox's mapped root (directories 0755).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["TOOLKIT_MOUNT", "ToolkitUnavailable", "build_toolkit"]

TOOLKIT_MOUNT = Path("/opt/redteam")
PROBE_SOURCE = Path(__file__).with_name("probe.c")
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))


class ToolkitUnavailable(RuntimeError):
    """The host lacks what the toolkit is built from; the message says what."""


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ToolkitUnavailable("no static busybox: install the busybox-static package")


def build_toolkit(cache_dir: Path) -> Path:
    """The toolkit directory for the current probe source, built if needed (blocking)."""
    busybox = _busybox()
    digest = hashlib.sha256()
    digest.update(PROBE_SOURCE.read_bytes())
    digest.update(busybox.read_bytes())
    target = cache_dir / f"toolkit-{digest.hexdigest()[:16]}"
    if (target / "ironclaw-probe").is_file():
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
