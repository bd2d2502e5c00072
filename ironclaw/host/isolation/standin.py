"""A stand-in image: a static busybox with the sealed image's mount points.

For measuring and testing the runtimes and the spec rather than the agent: the
benchmark runs its shell-loop workloads in it when no sealed image can be built, and
sandbox tests run their scripts in it. The daemon never launches it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .mountpoints import MOUNT_POINTS_DIRS, MOUNT_POINTS_FILES

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "true", "sleep", "cat", "dd", "echo", "rm", "sync")
# The image's mount points, relative to its root.
MOUNT_DIRS = tuple(path.lstrip("/") for path in MOUNT_POINTS_DIRS)
MOUNT_FILES = tuple(path.lstrip("/") for path in MOUNT_POINTS_FILES)


def build_busybox_rootfs(dest: Path, applets: tuple[str, ...] = BUSYBOX_APPLETS) -> Path:
    """``dest/rootfs``: busybox with ``applets``, the agent's passwd entry, every mount
    point, and every directory searchable by the sandbox's unprivileged host uid."""
    if not BUSYBOX.exists():
        raise FileNotFoundError("busybox-static is not installed (/bin/busybox)")
    rootfs = dest / "rootfs"
    for name in MOUNT_DIRS:
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    for name in MOUNT_FILES:
        (rootfs / name).touch()
    (rootfs / "bin").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in applets:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("agent:x:65532:65532::/workspace:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("agent:x:65532:\n")
    (rootfs / "tmp").chmod(0o1777)
    for path in (dest, *(p for p in rootfs.rglob("*") if p.is_dir() and not p.is_symlink())):
        path.chmod(path.stat().st_mode | 0o011)
    rootfs.chmod(0o755)
    return rootfs
