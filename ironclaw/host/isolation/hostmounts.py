"""Granted host mounts, staged so that a sandbox gets exactly the directory verified.

An agent group's approved mounts (the ``mounts`` change kind) are bound into each of
its sandboxes. A path is only a name: between the check and the runtime's bind, any
component of it could become a symlink to ``/etc``. So at every launch the host:

1. opens the source from ``/`` one component at a time, each relative to the
   descriptor of its parent, with ``O_PATH | O_NOFOLLOW``: a symlink anywhere on the
   way fails the open instead of being followed, and ``..`` never occurs (sources are
   canonical);
2. checks that the source still lies under its configured root and is none of the
   protected places (:func:`refusal`);
3. binds *that descriptor* (``/proc/self/fd/N``, which the kernel resolves to the
   very directory held, not to a path) onto a stage point of its own,
   ``<state>/runtime/mounts/<container>/<name>`` for the target ``/mnt/<name>``,
   remounts it ``nosuid,nodev,noexec`` (and ``ro`` unless writing was granted) and
   makes it private;
4. gives the OCI runtime the stage directory, bound read-only at ``/mnt`` (so every
   mount point exists before the runtime looks: none is made in the image), and each
   stage point, a path only root can change, as its bind's source.

The stage is undone (lazy unmount, then ``rmdir``: never a recursive removal, which
would walk into the operator's directory) whenever the container is cleaned up, and
by the reconcile at start for a control plane that died with stages mounted. Nested
mounts below a source are not carried (the bind is not recursive).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import posixpath
from pathlib import Path

import attrs

__all__ = [
    "PROTECTED_PATHS",
    "HostMount",
    "MountRefused",
    "mounts_dir",
    "refusal",
    "release_stages",
    "stage_mounts",
]

logger = logging.getLogger(__name__)

# Never a mount source, nor anything inside one of them, nor any parent of one.
PROTECTED_PATHS = ("/proc", "/sys", "/dev", "/run")
MAX_COMPONENTS = 256

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_PRIVATE = 0x20, 0x1000, 0x40000
_MNT_DETACH, _UMOUNT_NOFOLLOW = 0x2, 0x8
_libc = ctypes.CDLL(None, use_errno=True)


class MountRefused(RuntimeError):
    """A granted mount cannot be bound as granted (a symlink on its path, a source
    gone or moved out of its root): the launch fails closed."""


@attrs.frozen
class HostMount:
    """One granted mount, as the isolator binds it."""

    root: str  # the operator's mount root the source was approved under
    source: str  # canonical absolute host path
    target: str  # where the sandbox sees it, under /mnt/
    writable: bool


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def refusal(source: str, root: str, protected: tuple[str, ...] = ()) -> str | None:
    """Why ``source`` may not be mounted from ``root``, or None. ``protected`` adds
    the control plane's own places (its state directory, the image cache) to
    :data:`PROTECTED_PATHS`: none of them, nothing inside one, and no parent of one
    may be a source."""
    if not _inside(source, root):
        return f"{source!r:.80} is outside its mount root {root!r:.80}"
    if source == "/":
        return "/ may never be mounted"
    for place in (*PROTECTED_PATHS, *protected):
        if _inside(place, source):
            return f"{source!r:.80} is {place!r:.80} or one of its parents"
        if _inside(source, place):
            return f"{source!r:.80} lies inside {place!r:.80}"
    return None


def open_beneath(source: str) -> int:
    """An ``O_PATH`` descriptor of the directory ``source``, reached from ``/`` without
    following any symlink. Raises :class:`MountRefused`."""
    parts = [p for p in source.split("/") if p]
    if len(parts) > MAX_COMPONENTS or any(p in (".", "..") for p in parts):
        raise MountRefused(f"{source!r:.80} is not a canonical path")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                child = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                # ENOTDIR/ELOOP: a symlink (or a file) where a directory was approved.
                raise MountRefused(f"{source!r:.80}: {part!r:.80} is not a directory "
                                   f"reachable without a symlink ({exc.strerror})") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _mount(source: str | None, target: Path, flags: int) -> None:
    if _libc.mount(None if source is None else source.encode(), str(target).encode(),
                   None, ctypes.c_ulong(flags), None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {target}: {os.strerror(code)}")


def _stage_one(mount: HostMount, point: Path, protected: tuple[str, ...]) -> None:
    problem = refusal(mount.source, mount.root, protected)
    if problem is not None:
        raise MountRefused(problem)
    fd = open_beneath(mount.source)
    try:
        point.mkdir(mode=0o700)
        _mount(f"/proc/self/fd/{fd}", point, _MS_BIND)
    finally:
        os.close(fd)
    flags = _MS_BIND | _MS_REMOUNT | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount(None, point, flags if mount.writable else flags | _MS_RDONLY)
    _mount(None, point, _MS_PRIVATE)


def stage_mounts(mounts: tuple[HostMount, ...], stages: Path,
                 protected: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """Stage every mount under ``stages`` (blocking, root only); returns each one's
    stage point, in order. On any failure, what was staged is released."""
    release_stages(stages)
    if not mounts:
        return ()
    # The sandbox sees this directory as /mnt: it may list the names, nothing more.
    stages.mkdir(mode=0o755, parents=True, exist_ok=True)
    points = []
    try:
        for mount in mounts:
            name = mount.target.removeprefix("/mnt/")
            if not mount.target.startswith("/mnt/") or "/" in name or \
                    name in ("", ".", ".."):
                raise MountRefused(f"mount target {mount.target!r:.80} is not /mnt/<name>")
            point = stages / name
            _stage_one(mount, point, protected)
            points.append(point)
    except BaseException:
        release_stages(stages)
        raise
    return tuple(points)


def release_stages(stages: Path) -> int:
    """Unmount and remove every stage point under ``stages``, then ``stages`` itself
    (blocking); returns how many were mounted. Never removes anything recursively:
    a stage still mounted after its unmount stays, and is logged."""
    if not stages.is_dir():
        return 0
    released = 0
    for entry in os.listdir(stages):
        point = stages / entry
        if _libc.umount2(str(point).encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
            released += 1
        elif ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
            logger.error("cannot unmount the mount stage %s: %s", point,
                         os.strerror(ctypes.get_errno()))
        try:
            point.rmdir()
        except OSError as exc:
            logger.error("cannot remove the mount stage %s: %s", point, exc.strerror)
    try:
        stages.rmdir()
    except OSError as exc:
        logger.error("cannot remove the mount stages %s: %s", stages, exc.strerror)
    return released


def mounts_dir(state_dir: Path) -> Path:
    """Where every container's stages live (``<state>/runtime/mounts``)."""
    return state_dir / "runtime" / "mounts"


def default_target(source: str) -> str:
    return "/mnt/" + posixpath.basename(source)
