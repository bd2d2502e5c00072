"""One disk cap the kernel enforces over everything an agent group's sandboxes write.

An agent writes to two places: its agent group's durable workspace, and its own
session's outbound directory. Both live on one ext4 filesystem per agent group, in a
sparse image file ``<state>/volumes/groups/<folder>.img`` loop-mounted
``nosuid,nodev,noexec`` at ``<state>/volumes/groups/<folder>/``: its ``workspace/``
is bind-mounted (on the host) at ``<state>/workspaces/<folder>``, and each session's
``outbound/<session id>/`` at ``<state>/sessions/<id>/outbound``. The host and the
sandbox keep using those paths; the binds are what put them on the volume. When the
group's sandboxes fill it, their writes fail with ENOSPC (bytes or inodes), wherever
they write; the filesystem that holds ``host.db``, the audit log and every other
group never sees a byte of it. The cap holds under runsc, runc and crun alike,
because it is the host kernel's filesystem under the bind, whatever runs above it.

Why per agent group, not per session: the workspace is the group's, shared by its
sessions, so a cap over "workspace and outbound together" can only be the group's.
One session of a group can fill what its siblings share; they are one agent (one
persona, one set of tools, one owner), and no other group shares a byte of it.
Inbound is not on the volume: the host is its only writer (the agent cannot write a
byte there), and the host caps it per session (``DiskCaps.inbound_bytes``, at the
writer, see ``ironclaw.host.inbound.queues``); on the volume, an agent's fill would refuse the
host's writes of the very messages meant for it.

Lifetime: the host reads a session's outbound directory when no sandbox runs (the
recovery at start looks for undelivered replies), so a volume and its binds, once
mounted, stay mounted until the control plane stops (:meth:`Volumes.release_all`).
At start, :meth:`Volumes.mount_existing` mounts every volume and rebinds every
directory on it whose host path still exists, before any session starts, adopting the
mounts a killed control plane left. A deleted session's bind goes with it
(:meth:`Volumes.release_session`), and so does what it held on the volume.
``mount -o loop`` sets the loop device to clear itself once its last mount (the
volume's or a bind's) is gone.

Blocking throughout: callers run these on worker threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import attrs

from ironclaw.contract.queue.files import DEFAULT_MAX_FILE_BYTES

from .adoption import swap_in

__all__ = ["DiskCaps", "NotAdoptable", "VolumeError", "Volumes", "leftover_volumes",
           "release_volumes"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
VOLUMES_DIR = "volumes"
GROUPS_DIR = "groups"
WORKSPACE_DIR = "workspace"
OUTBOUND_DIR = "outbound"
MOUNT_OPTIONS = "loop,nosuid,nodev,noexec"
COMMAND_TIMEOUT_S = 120
LOOP_RELEASE_TRIES = 20
LOOP_RELEASE_PAUSE_S = 0.1


class VolumeError(RuntimeError):
    """A disk volume could not be created, mounted or released; the message says why."""


class NotAdoptable(VolumeError):
    """A warm sandbox cannot take this session's directories; nothing was moved."""


@attrs.frozen
class DiskCaps:
    """``group_bytes``: what one agent group's workspace and all its sessions' outbound
    directories may hold together (one volume); 0 turns it off (the directories then
    live on the state directory's own filesystem, uncapped).

    ``inbound_bytes`` is no volume: the host is inbound.db's only writer, so the host
    enforces it at its own writer (``InboundWriter``, see ``ironclaw.host.inbound.queues``).
    It may not exceed what the sandbox's reader copies (``DEFAULT_MAX_FILE_BYTES``):
    a larger file could never be read."""

    group_bytes: int = 1280 * MiB
    inbound_bytes: int = 64 * MiB

    def __attrs_post_init__(self) -> None:
        if self.group_bytes and not (16 * MiB <= self.group_bytes <= 1 << 40):
            raise ValueError("group_bytes must be 0 (off) or between 16 MiB and 1 TiB")
        if self.inbound_bytes and not (MiB <= self.inbound_bytes <= DEFAULT_MAX_FILE_BYTES):
            raise ValueError("inbound_bytes must be 0 (off) or between 1 MiB and "
                             f"{DEFAULT_MAX_FILE_BYTES // MiB} MiB")

    @classmethod
    def from_table(cls, table: object) -> DiskCaps:
        """From the config file's ``[sandbox_disk]`` table; unknown keys and wrong
        types are errors, never ignored."""
        if not isinstance(table, dict):
            raise ValueError("sandbox_disk must be a table")
        fields = ("group_bytes", "inbound_bytes")
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
        self._groups = self._state / VOLUMES_DIR / GROUPS_DIR
        self.caps = caps
        # Two sessions of one group may launch at once; both want its volume.
        self._lock = threading.Lock()

    def image_for(self, folder: str) -> Path:
        return self._groups / f"{folder}.img"

    def volume_for(self, folder: str) -> Path:
        """Where the group's volume is mounted (root only: the sandbox sees only the
        binds)."""
        return self._groups / folder

    def ensure(self, workspace: Path, outbound: Path) -> None:
        """``workspace`` (``<state>/workspaces/<folder>``) and ``outbound``
        (``<state>/sessions/<id>/outbound``) are binds of their directories on the
        group's volume, created on first use. Entries already under an unbound
        directory (written before it was on a volume) are copied in first, so nothing
        durable is hidden under the bind."""
        if not self.caps.group_bytes:
            return
        workspace, outbound = workspace.resolve(), outbound.resolve()
        if workspace.parent != self._state / "workspaces" or \
                outbound.parent.parent != self._state / "sessions" or \
                outbound.name != "outbound":
            raise VolumeError(f"{workspace} and {outbound} are not a workspace and an "
                              "outbound directory of this state directory")
        with self._lock:
            volume = self._ensure_volume(workspace.name)
            _bind_moving_entries(volume / WORKSPACE_DIR, workspace)
            _bind_moving_entries(volume / OUTBOUND_DIR / outbound.parent.name, outbound)

    def mount_existing(self) -> list[Path]:
        """At start: mount every volume, and bind every directory on it whose host
        path exists (adopting what a killed control plane left). One that will not
        mount is logged and left: its sessions fail at launch, every other starts.
        Returns the host paths bound."""
        bound: list[Path] = []
        with self._lock:
            bound += self._mount_former_layout()
            for image in sorted(self._groups.glob("*.img")):
                folder = image.stem
                try:
                    volume = self._mount_volume(image, self.volume_for(folder))
                    pairs = [(volume / WORKSPACE_DIR, self._state / "workspaces" / folder)]
                    pairs += [(source, self._state / "sessions" / source.name / "outbound")
                              for source in sorted((volume / OUTBOUND_DIR).glob("*"))]
                    for source, target in pairs:
                        if source.is_dir() and target.parent.is_dir():
                            _bind_moving_entries(source, target)
                            bound.append(target)
                except (VolumeError, OSError) as exc:
                    logger.error("cannot mount the disk volume of agent group %s: %s",
                                 folder, exc)
        return bound

    def release_all(self) -> list[Path]:
        return release_volumes(self._state)

    def release_session(self, session_dir: Path, workspace: Path | None) -> None:
        """For a deleted session: unbind its outbound directory and remove what it held
        on the volume (and, with ``workspace``, empty the group's workspace on it; its
        bind stays, for the group's next session). Its former-layout image goes too."""
        session_dir = session_dir.resolve()
        if session_dir.parent != self._state / "sessions":
            raise VolumeError(f"{session_dir} is not a session directory of this state "
                              "directory")
        sid = session_dir.name
        with self._lock:
            outbound = session_dir / "outbound"
            if os.path.ismount(outbound):
                _run([_tool("umount"), str(outbound)])
            for volume in self._groups.iterdir() if self._groups.is_dir() else ():
                on_volume = volume / OUTBOUND_DIR / sid
                if volume.is_dir() and os.path.ismount(volume) and on_volume.is_dir():
                    shutil.rmtree(on_volume)
            former = self._state / VOLUMES_DIR / "sessions" / f"{sid}.img"
            former.unlink(missing_ok=True)
            if workspace is not None and workspace.is_dir():
                for entry in list(workspace.iterdir()):
                    _remove(entry)

    def check_adoptable(self, folder: str, session_dir: Path) -> None:
        """Raise :class:`NotAdoptable` for a session whose outbound is a volume of its
        own (the layout before group volumes): there is nothing to move it onto."""
        own = self.volume_for(folder) / OUTBOUND_DIR / session_dir.name
        if self.caps.group_bytes and os.path.ismount(session_dir / "outbound") and \
                not own.is_dir():
            raise NotAdoptable(f"{session_dir} keeps a former-layout outbound volume")

    def adopt_outbound(self, folder: str, slot_dir: Path, session_dir: Path) -> bool:
        """A claimed warm sandbox (``adoption``): its outbound directory on the group's
        volume becomes the session's, holding the session's entries, and is bound at
        the session's path. False, doing nothing, when there are no volumes."""
        if not self.caps.group_bytes:
            return False
        with self._lock:
            self.check_adoptable(folder, session_dir)
            volume = self.volume_for(folder)
            for target in (slot_dir / "outbound", session_dir / "outbound"):
                if os.path.ismount(target):
                    _run([_tool("umount"), str(target)])
            outbound = volume / OUTBOUND_DIR
            swap_in(outbound / slot_dir.name, outbound / session_dir.name)
            target = session_dir / "outbound"
            target.mkdir(mode=0o700, exist_ok=True)
            _run([_tool("mount"), "--bind", str(outbound / session_dir.name), str(target)])
            return True

    def _mount_former_layout(self) -> list[Path]:
        """Volumes of the layout before group volumes (one image per workspace, one
        per session's outbound) are mounted where they were, keeping their own caps
        and contents: nothing they hold is hidden. A directory mounted so is left as
        it is by :meth:`ensure`."""
        mounted = []
        images = self._state / VOLUMES_DIR
        for image in sorted([*images.glob("workspaces/*.img"), *images.glob("sessions/*.img")]):
            target = (self._state / "workspaces" / image.stem
                      if image.parent.name == "workspaces"
                      else self._state / "sessions" / image.stem / "outbound")
            if not target.is_dir():
                continue
            try:
                if not os.path.ismount(target):
                    _run([_tool("mount"), "-t", "ext4", "-o", MOUNT_OPTIONS, str(image),
                          str(target)])
                mounted.append(target)
            except VolumeError as exc:
                logger.error("cannot mount the former-layout disk volume of %s: %s",
                             target, exc)
        return mounted

    def _ensure_volume(self, folder: str) -> Path:
        image, volume = self.image_for(folder), self.volume_for(folder)
        if not image.exists():
            self._create(image, self.caps.group_bytes)
        return self._mount_volume(image, volume)

    def _mount_volume(self, image: Path, volume: Path) -> Path:
        volume.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.path.ismount(volume):
            _run([_tool("mount"), "-t", "ext4", "-o", MOUNT_OPTIONS, str(image),
                  str(volume)])
        volume.chmod(0o700)
        lost_found = volume / "lost+found"
        if lost_found.is_dir() and not any(lost_found.iterdir()):
            lost_found.rmdir()
        (volume / WORKSPACE_DIR).mkdir(mode=0o700, exist_ok=True)
        (volume / OUTBOUND_DIR).mkdir(mode=0o700, exist_ok=True)
        return volume

    def _create(self, image: Path, size_bytes: int) -> None:
        image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for private in (self._state / VOLUMES_DIR, image.parent):
            private.chmod(0o700)
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


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _bind_moving_entries(source: Path, target: Path) -> None:
    """Bind ``source`` (on a volume) at ``target``; entries under an unbound ``target``
    are copied into ``source`` first, and removed from under it only once they are all
    there (a crash in between copies them again; what does not fit stays where it
    was, and the launch fails naming it)."""
    source.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.path.ismount(target):
        return
    waiting = list(target.iterdir())
    if waiting:
        before = set(source.iterdir())
        try:
            _run([_tool("cp"), "-a", f"{target}/.", f"{source}/"])
        except VolumeError:
            for entry in set(source.iterdir()) - before:  # most likely over the cap
                _remove(entry)
            raise
        for entry in waiting:
            _remove(entry)
        logger.warning("moved %d entries of %s onto its agent group's disk volume",
                       len(waiting), target)
    _run([_tool("mount"), "--bind", str(source), str(target)])


def _ours(state_dir: Path) -> tuple[Path, ...]:
    """Where our mounts live: the binds, then the volumes themselves."""
    state = state_dir.resolve()
    return (state / "workspaces", state / "sessions", state / VOLUMES_DIR / GROUPS_DIR)


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


def release_volumes(state_dir: Path) -> list[Path]:
    """Unmount this state directory's binds and volumes, binds first; a mount still
    busy is detached lazily, and its loop device clears itself once the last user is
    gone. Returns what was released."""
    roots = _ours(state_dir)
    released = []

    def binds_first(point: Path) -> tuple[bool, int]:
        return (_under(point, roots[2:]), -len(point.parts))

    for point in sorted(set(_mount_points()), key=binds_first):
        if not _under(point, roots) or point in roots:
            continue
        umount = _tool("umount")
        try:
            _run([umount, str(point)])
        except VolumeError:
            _run([umount, "-l", str(point)])
        released.append(point)
    # A loop device whose mount is gone (a kill between attach and mount) would
    # otherwise hold its image forever. One whose last mount just went clears
    # itself, but the kernel does that a moment later: look again until none is
    # left, a few times.
    for _ in range(LOOP_RELEASE_TRIES):
        devices = _loop_devices(state_dir)
        if not devices:
            break
        for device in devices:
            subprocess.run([_tool("losetup"), "-d", device], capture_output=True,
                           timeout=COMMAND_TIMEOUT_S, check=False)
        time.sleep(LOOP_RELEASE_PAUSE_S)
    return released
