"""Disk caps the kernel enforces: each writable bind lives on a size-capped filesystem.

An agent writes to two places: its agent group's durable workspace, and its session's
outbound directory. Each is the mount point of an ext4 filesystem in a sparse image
file under ``<state>/volumes/`` (``workspaces/<folder>.img``, ``sessions/<id>.img``),
loop-mounted ``nosuid,nodev,noexec``. When an agent fills one, its own writes fail
with ENOSPC (bytes or inodes); the filesystem that holds
``host.db``, the audit log and every other session never sees a byte of it. The cap
holds under runsc, runc and crun alike, because it is the host kernel's filesystem
under the bind, whatever runs above it.

Lifetime: the host reads a session's outbound directory when no sandbox runs (the
recovery at start looks for undelivered replies), so a volume, once mounted, stays
mounted until the control plane stops (:meth:`Volumes.release_all`). At start,
:meth:`Volumes.mount_existing` mounts every volume whose directory still exists,
before any session starts, adopting the mounts a killed control plane left.
``mount -o loop`` sets the loop device to clear itself on unmount, so releasing a
mount releases its loop device too.

Blocking throughout: callers run these on worker threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import attrs

from ironclaw.contract.queue.files import DEFAULT_MAX_FILE_BYTES

__all__ = ["DiskCaps", "VolumeError", "Volumes", "leftover_volumes", "release_volumes"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
VOLUMES_DIR = "volumes"
MOUNT_OPTIONS = "loop,nosuid,nodev,noexec"
COMMAND_TIMEOUT_S = 120


class VolumeError(RuntimeError):
    """A disk volume could not be created, mounted or released; the message says why."""


@attrs.frozen
class DiskCaps:
    """Bytes each writable bind may hold. The workspace is shared by an agent group's
    sessions; outbound is one session's. 0 turns a cap off (the directory then lives
    on the state directory's own filesystem, uncapped).

    ``inbound_bytes`` is no volume: the host is inbound.db's only writer, so the host
    enforces it at its own writer (``InboundWriter``, see ``ironclaw.host.inbound.queues``).
    It may not exceed what the sandbox's reader copies (``DEFAULT_MAX_FILE_BYTES``):
    a larger file could never be read."""

    workspace_bytes: int = 1024 * MiB
    outbound_bytes: int = 256 * MiB
    inbound_bytes: int = 64 * MiB

    def __attrs_post_init__(self) -> None:
        for name in ("workspace_bytes", "outbound_bytes"):
            value = getattr(self, name)
            if value and not (16 * MiB <= value <= 1 << 40):
                raise ValueError(f"{name} must be 0 (off) or between 16 MiB and 1 TiB")
        if self.inbound_bytes and not (MiB <= self.inbound_bytes <= DEFAULT_MAX_FILE_BYTES):
            raise ValueError("inbound_bytes must be 0 (off) or between 1 MiB and "
                             f"{DEFAULT_MAX_FILE_BYTES // MiB} MiB")

    @classmethod
    def from_table(cls, table: object) -> DiskCaps:
        """From the config file's ``[sandbox_disk]`` table; unknown keys and wrong
        types are errors, never ignored."""
        if not isinstance(table, dict):
            raise ValueError("sandbox_disk must be a table")
        fields = ("workspace_bytes", "outbound_bytes", "inbound_bytes")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ValueError(f"sandbox_disk: unknown key(s) {', '.join(unknown)}")
        for key, value in table.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"sandbox_disk.{key} must be a whole number of bytes")
        return cls(**table)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mount_points() -> list[Path]:
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return [Path(_unescape(line.split()[4])) for line in mountinfo if line.strip()]


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise VolumeError(f"{argv[0]} failed ({done.returncode}): "
                          f"{(done.stderr or done.stdout).strip()[-400:]}")


def _tool(name: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise VolumeError(f"{name} is not installed (e2fsprogs and util-linux provide "
                          "the disk caps' tools)")
    return found


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class Volumes:
    """The disk volumes of one state directory."""

    def __init__(self, state_dir: Path, caps: DiskCaps) -> None:
        self._state = state_dir.resolve()
        self._images = self._state / VOLUMES_DIR
        self.caps = caps
        # Two sessions of one group may launch at once; both want its workspace.
        self._lock = threading.Lock()

    def image_for(self, target: Path) -> Path:
        """``workspaces/<folder>`` and ``sessions/<id>/outbound`` have one image each."""
        target = target.resolve()
        if target.parent == self._state / "workspaces":
            return self._images / "workspaces" / f"{target.name}.img"
        if target.parent.parent == self._state / "sessions" and target.name == "outbound":
            return self._images / "sessions" / f"{target.parent.name}.img"
        raise VolumeError(f"{target} is not a workspace or an outbound directory")

    def target_for(self, image: Path) -> Path:
        if image.parent == self._images / "workspaces":
            return self._state / "workspaces" / image.stem
        return self._state / "sessions" / image.stem / "outbound"

    def ensure(self, target: Path, size_bytes: int) -> None:
        """``target`` is the mount point of its capped volume, created on first use.
        Entries already under an unmounted ``target`` (written before it had a volume)
        move into the volume, so nothing durable is hidden under the mount."""
        if not size_bytes:
            return
        with self._lock:
            target = target.resolve()
            if os.path.ismount(target):
                return
            image = self.image_for(target)
            created = not image.exists()
            if created:
                self._create(image, size_bytes)
            self._mount_moving_entries(image, target)
            if created:
                lost_found = target / "lost+found"
                if lost_found.is_dir() and not any(lost_found.iterdir()):
                    lost_found.rmdir()

    def mount_existing(self) -> list[Path]:
        """At start: mount every volume whose directory exists (adopting what a killed
        control plane left mounted). One that will not mount is logged and left: its
        session fails at launch, every other one starts."""
        mounted = []
        with self._lock:
            for image in sorted(self._images.glob("*/*.img")):
                target = self.target_for(image)
                if not target.is_dir():
                    continue
                if not os.path.ismount(target):
                    try:
                        self._mount_moving_entries(image, target)
                    except (VolumeError, OSError) as exc:
                        logger.error("cannot mount the disk volume of %s: %s", target, exc)
                        continue
                mounted.append(target)
        return mounted

    def release_all(self) -> list[Path]:
        return release_volumes(self._state)

    def _create(self, image: Path, size_bytes: int) -> None:
        image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._images.chmod(0o700)
        partial = image.with_name(image.name + ".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size_bytes)  # sparse: the host pays only for what is written
        finally:
            os.close(fd)
        # -m 0: no blocks reserved for root, the agent is never root on the host.
        # lazy_journal_init: the journal is not written out as zeros, which would cost
        # the host 8 MiB (256 MiB volume) to 32 MiB (1 GiB) at once. Zeroing guards
        # against replaying stale blocks; a fresh sparse file has none, its holes read
        # as zeros.
        _run([_tool("mkfs.ext4"), "-q", "-F", "-m", "0", "-L", "ironclaw",
              "-E", "lazy_journal_init=1", str(partial)])
        partial.rename(image)

    def _mount_moving_entries(self, image: Path, target: Path) -> None:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        aside = target.with_name(target.name + ".moving")
        if aside.exists():  # a move that a crash interrupted: start it again
            if any(target.iterdir()):
                raise VolumeError(f"both {target} and {aside} hold entries (an "
                                  "interrupted move into a disk volume): merge them")
            target.rmdir()
            aside.rename(target)
        waiting = list(target.iterdir())
        if waiting:
            target.rename(aside)
            target.mkdir(mode=0o700)
        _run([_tool("mount"), "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(target)])
        if waiting:
            try:
                _run([_tool("cp"), "-a", f"{aside}/.", f"{target}/"])
            except VolumeError:
                # Too large for the cap, most likely: put everything back as it was.
                release_volumes(self._state, only=target)
                target.rmdir()
                aside.rename(target)
                raise
            shutil.rmtree(aside)
            logger.warning("moved %d entries of %s into its capped volume", len(waiting),
                           target)


def _ours(state_dir: Path) -> tuple[Path, ...]:
    state = state_dir.resolve()
    return (state / "workspaces", state / "sessions")


def _loop_devices(state_dir: Path) -> list[str]:
    """Loop devices backed by this state directory's images (from sysfs)."""
    images = state_dir.resolve() / VOLUMES_DIR
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = Path(backing.read_text().strip().removesuffix(" (deleted)"))
        except OSError:
            continue
        if images in path.parents:
            found.append("/dev/" + backing.parent.parent.name)
    return sorted(found)


def leftover_volumes(state_dir: Path) -> list[str]:
    """Mounts of this state directory's volumes, and loop devices backed by its
    images, still in place (blocking): empty after a clean stop."""
    roots = _ours(state_dir)
    return [*(f"mount:{point}" for point in _mount_points()
              if _under(point, roots) and point not in roots),
            *(f"loop:{device}" for device in _loop_devices(state_dir))]


def release_volumes(state_dir: Path, *, only: Path | None = None) -> list[Path]:
    """Unmount this state directory's volumes (all, or ``only`` one); a mount still
    busy is detached lazily, and its loop device clears itself once the last user is
    gone. Returns what was released."""
    roots = _ours(state_dir)
    released = []
    for point in sorted(set(_mount_points()), key=lambda p: len(p.parts), reverse=True):
        if not _under(point, roots) or point in roots or (only and point != only):
            continue
        umount = _tool("umount")
        try:
            _run([umount, str(point)])
        except VolumeError:
            _run([umount, "-l", str(point)])
        released.append(point)
    if only is None:
        # A loop device whose mount is gone (a kill between attach and mount) would
        # otherwise hold its image forever.
        for device in _loop_devices(state_dir):
            subprocess.run([_tool("losetup"), "-d", device], capture_output=True,
                           timeout=COMMAND_TIMEOUT_S, check=False)
    return released
