"""The commit fence: a seqlock in a small file beside each queue database.

Why: under gVisor neither side sees the other's file locks, so SQLite's own locking
cannot stop a reader from seeing a half-written commit. Instead every commit is
bracketed by the fence counter going odd (writing) and then even (stable). A
reader copies the database bytes only while the counter reads the same even value
before and after the copy; then the copy is a committed state. The reader takes no
lock, so nothing depends on a lock crossing the wall.

The fence also serialises writers of the same side (an ``flock`` on the fence file):
that lock is only ever contended by processes on one side of the wall, where locks
work. The counter is stored twice, the second copy inverted, so a torn read of the
fence itself is detected rather than trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

_FORMAT = struct.Struct("<QQ")
_MASK = (1 << 64) - 1


class FenceUnreadable(Exception):
    """The fence file is missing, short or torn."""


def read_fence(path: Path) -> int:
    """Return the counter. Raises FenceUnreadable on a missing or torn fence."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise FenceUnreadable("no fence") from exc
    try:
        data = os.pread(fd, _FORMAT.size, 0)
    finally:
        os.close(fd)
    if len(data) != _FORMAT.size:
        raise FenceUnreadable("short fence")
    value, check = _FORMAT.unpack(data)
    if value ^ _MASK != check:
        raise FenceUnreadable("torn fence")
    return int(value)


class WriterFence:
    """A writer's handle on the fence. One per writer instance; not thread-safe
    (the owning writer serialises its own threads)."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self._path = path
        self._durable = durable
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.fchmod(self._fd, 0o644)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> int:
        data = os.pread(self._fd, _FORMAT.size, 0)
        if len(data) != _FORMAT.size:
            return 0  # a fresh file: start at zero
        value, check = _FORMAT.unpack(data)
        if value ^ _MASK != check:
            # Only a crash mid-write of the fence itself can do this; move past it.
            return int(max(value, check ^ _MASK)) | 1
        return int(value)

    def _write(self, value: int) -> None:
        os.pwrite(self._fd, _FORMAT.pack(value, value ^ _MASK), 0)
        if self._durable:
            # Ordering matters more than durability here: under gVisor the sentry may
            # hold writes, and the host must see "odd" before any page of the commit.
            os.fdatasync(self._fd)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writers' lock and keep the counter odd for the block's duration.

        If a previous writer died mid-commit the counter is already odd; we move on
        to the next odd value, and SQLite rolls its hot journal back inside our
        window, so readers never copy that half state either."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            current = self._read()
            odd = current + 1 if current % 2 == 0 else current + 2
            self._write(odd)
            try:
                yield
            finally:
                self._write(odd + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
