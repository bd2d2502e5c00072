"""Handing a warm sandbox's directories to the session that claims it.

A warm sandbox was created with binds to directories of its own (a slot: inbound,
outbound, sockets), because an OCI bind is fixed when the container is created and the
session was not known then. A claim makes those very directories the session's: the
session's entries are moved into the slot's directory (a rename on one filesystem:
open descriptors stay valid, nothing is copied), then the slot's directory takes the
session's path and the emptied one is removed. The sandbox keeps seeing the inode it
was bound to, now holding the session's files; the host keeps using the session's
paths. Nothing is opened: entries are renamed by name relative to directory
descriptors opened without following a symlink, so whatever an earlier sandbox left in
its outbound directory (a FIFO, a symlink) moves as the thing it is, never through it.

Blocking: callers run this on a worker thread, before anything watches the session's
directories or serves a socket in them, with the session's inbound writer held
(``fence_lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fence_lock", "move_entries", "swap_in"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def move_entries(source: Path, target: Path, *, keep: frozenset[str] = frozenset()
                 ) -> list[str]:
    """Rename every entry of ``source`` into ``target`` (same filesystem), replacing a
    same-named file there; entries named in ``keep`` stay where they are. Returns the
    names moved."""
    src = os.open(source, _DIR_FLAGS)
    try:
        dst = os.open(target, _DIR_FLAGS)
        try:
            names = [name for name in os.listdir(src) if name not in keep]
            for name in names:
                os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
            return names
        finally:
            os.close(dst)
    finally:
        os.close(src)


def swap_in(slot_dir: Path, session_dir: Path) -> None:
    """Move ``session_dir``'s entries into ``slot_dir``, then put ``slot_dir`` at
    ``session_dir``'s path. On a failure before the swap, the entries go back."""
    if session_dir.is_dir() and not session_dir.is_symlink():
        try:
            move_entries(session_dir, slot_dir)
        except OSError:
            with contextlib.suppress(OSError):
                move_entries(slot_dir, session_dir)
            raise
        tomb = session_dir.with_name(f".{session_dir.name}-{secrets.token_hex(4)}")
        session_dir.rename(tomb)
        try:
            slot_dir.rename(session_dir)
        except OSError:
            tomb.rename(session_dir)
            with contextlib.suppress(OSError):
                move_entries(slot_dir, session_dir)
            raise
        shutil.rmtree(tomb, ignore_errors=True)  # empty: everything moved
    else:
        session_dir.parent.mkdir(parents=True, exist_ok=True)
        slot_dir.rename(session_dir)


@contextlib.contextmanager
def fence_lock(fence: Path) -> Iterator[None]:
    """Hold the writers' lock of a queue file (``fence.WriterFence``): the host's
    writer of that file commits nothing until it is released, so its database,
    journal and fence move together. A missing fence (no writer yet) locks nothing."""
    try:
        fd = os.open(fence, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
