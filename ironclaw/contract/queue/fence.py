"""The commit fence: a seqlock in a small file beside each queue database.

Why: under gVisor neither side sees the other's file locks, so SQLite's own locking
cannot stop a reader from seeing a half-written commit. Instead every commit is
bracketed by the fence counter going odd (writing) and then even (stable). A
reader copies the database bytes only while the counter reads the same even value
before and after the copy; then the copy is a committed state. The reader takes no
lock, so nothing depends on a lock crossing the wall.

A reader needs an even window at least as long as one copy of the file. A writer
committing back to back would leave windows of a few hundred microseconds, shorter
than copying a megabyte under load, and starve the reader forever. So writers pace
themselves: the next commit may not begin until a gap, scaled to the file's size,
has passed since the last one ended. The end time is kept in the fence file, so
every writer instance of that side honours it. (A hostile sandbox can ignore pacing
on its own outbound file; then only its own session's reads fail, as QueueBusy.)

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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..untrusted_files import open_untrusted

# counter, inverted counter, monotonic nanoseconds at which the last commit ended
_FORMAT = struct.Struct("<QQQ")
_COUNTER = struct.Struct("<QQ")
_MASK = (1 << 64) - 1

# Pacing: every gap is at least the floor, plus the time to copy the file at a
# deliberately pessimistic rate, so a reader on a loaded machine still fits.
PACE_FLOOR_S = 0.0005
PACE_COPY_BYTES_PER_S = 400e6


class FenceUnreadable(Exception):
    """The fence file is missing, short or torn."""


def decode_fence(data: bytes) -> int:
    if len(data) < _COUNTER.size:
        raise FenceUnreadable("short fence")
    value, check = _COUNTER.unpack_from(data)
    if value ^ _MASK != check:
        raise FenceUnreadable("torn fence")
    return int(value)


def read_fence(path: Path) -> int:
    """Return the counter. Raises FenceUnreadable on a missing or torn fence, and on
    anything but a plain small file there (the other side writes this directory)."""
    try:
        with open_untrusted(path, max_bytes=4096) as (fd, _size):
            return decode_fence(os.pread(fd, _COUNTER.size, 0))
    except OSError as exc:
        raise FenceUnreadable(f"no usable fence: {exc}") from exc


def pacing_gap(file_bytes: int) -> float:
    return PACE_FLOOR_S + file_bytes / PACE_COPY_BYTES_PER_S


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

    def _read(self) -> tuple[int, int]:
        data = os.pread(self._fd, _FORMAT.size, 0)
        if len(data) < _COUNTER.size:
            return 0, 0  # a fresh file: start at zero
        value, check = _COUNTER.unpack_from(data)
        ended = _FORMAT.unpack(data)[2] if len(data) == _FORMAT.size else 0
        if value ^ _MASK != check:
            # Only a crash mid-write of the fence itself can do this; move past it.
            return int(max(value, check ^ _MASK)) | 1, 0
        return int(value), int(ended)

    def _write(self, value: int, ended_ns: int) -> None:
        os.pwrite(self._fd, _FORMAT.pack(value, value ^ _MASK, ended_ns), 0)
        if self._durable:
            # Ordering matters more than durability here: under gVisor the sentry may
            # hold writes, and the host must see "odd" before any page of the commit.
            os.fdatasync(self._fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' lock without opening a window: for a writer's own reads,
        which change nothing a reader could see."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writing(self, file_size: Callable[[], int] = lambda: 0) -> Iterator[None]:
        """Hold the writers' lock and keep the counter odd for the block's duration.

        If a previous writer died mid-commit the counter is already odd; we move on
        to the next odd value, and SQLite rolls its hot journal back inside our
        window, so readers never copy that half state either."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            current, ended_ns = self._read()
            if ended_ns:
                gap = pacing_gap(file_size())
                wait = ended_ns / 1e9 + gap - time.monotonic()
                # The end time is another writer's monotonic clock, which need not be
                # ours: every gVisor sandbox has a clock of its own that starts near
                # zero, so an end time left by an earlier sandbox can lie hours in
                # our future. No pause is ever longer than one gap (RFC-0003).
                if wait > 0:
                    time.sleep(min(wait, gap))
            odd = current + 1 if current % 2 == 0 else current + 2
            self._write(odd, ended_ns)
            try:
                yield
            finally:
                self._write(odd + 1, time.monotonic_ns())
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
