"""The one way the host opens a file under a directory a sandbox can write.

A sandbox owns what is in its outbound directory and its workspace (and, under the
process runtime, everything the control plane's user can reach). Where the host
expects a small regular file it may find a FIFO that never answers, a symlink to a
huge or host-private file, a device, or a hard link to another file. So every such
open goes through :func:`open_untrusted`, and every such read through
:func:`read_untrusted`:

* ``O_NOFOLLOW``: a symlink in the last component is refused (the directories above
  it are the host's own; the sandbox cannot swap them);
* ``O_NONBLOCK``: opening a FIFO with no writer returns at once instead of waiting
  for one forever; the flag is cleared again before any read;
* ``fstat`` on the open descriptor (not the path, which can change in between): a
  regular file, with exactly one link, no larger than the caller's cap;
* reads are ``pread`` on that descriptor, bounded by the cap even if the file grows;
  a large file is copied to a file of the reader's own with ``sendfile``
  (:func:`copy_bounded`), so its bytes never pass through the reader's memory.

Writing goes the same way. Where the host must put a file into such a directory (a
chat attachment into a workspace), :func:`open_untrusted_dir` walks to the directory
one name at a time through descriptors, never following a link and creating what is
missing, and :func:`create_untrusted` makes a new file in it with ``O_CREAT | O_EXCL |
O_NOFOLLOW``: a name the sandbox planted first (a symlink, a FIFO, a file) is refused,
never written through.

A read of a regular file cannot block forever, but it can be slow (a large file, a
loaded disk). :func:`run_untrusted` runs such work off the event loop, under a
deadline, on a limiter the caller owns (one per session), and abandons the thread if
the deadline passes: the thread finishes on its own, holding only that session's
limiter, never Trio's shared one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import trio

T = TypeVar("T")

__all__ = [
    "OPEN_FLAGS",
    "UnsafeFile",
    "UntrustedFileTooLarge",
    "copy_bounded",
    "create_untrusted",
    "open_untrusted",
    "open_untrusted_dir",
    "read_untrusted",
    "run_untrusted",
]

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
READ_CHUNK = 1 << 20
# How long untrusted-file work may take before the caller stops waiting for it.
DEFAULT_DEADLINE_S = 10.0


class UnsafeFile(OSError):
    """Something other than a plain regular file is where one was expected: a symlink,
    FIFO, socket, device, directory or hard link. No honest sandbox makes one."""


class UntrustedFileTooLarge(OSError):
    """The file is larger than the caller's cap."""


@contextlib.contextmanager
def open_untrusted(path: Path | str, *, max_bytes: int,
                   dir_fd: int | None = None) -> Iterator[tuple[int, int]]:
    """Open ``path`` for reading as described above; yield ``(fd, size)``. With
    ``dir_fd``, ``path`` is a name in that directory (a walk through descriptors, where
    no directory of the path can be swapped for a symlink).

    Raises FileNotFoundError if nothing is there, UnsafeFile if something other than a
    lone regular file is, UntrustedFileTooLarge past ``max_bytes``."""
    try:
        fd = os.open(path, OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(errno.ELOOP, "a symlink where a file was expected") from None
        if exc.errno == errno.ENXIO:  # a unix socket
            raise UnsafeFile(errno.ENXIO, "a socket where a file was expected") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EINVAL, f"not a regular file (mode {info.st_mode:o})")
        if info.st_nlink != 1:
            # A hard link lets a sandbox under the process runtime present a file the
            # host owns (host.db, a key file) as its own.
            raise UnsafeFile(errno.EMLINK, f"a file with {info.st_nlink} links")
        if info.st_size > max_bytes:
            raise UntrustedFileTooLarge(errno.EFBIG,
                                        f"{info.st_size} bytes exceed the cap of {max_bytes}")
        os.set_blocking(fd, True)
        yield fd, info.st_size
    finally:
        os.close(fd)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | \
    os.O_CLOEXEC


def open_untrusted_dir(names: tuple[str, ...], *, dir_fd: int, create_mode: int | None = None,
                       owner: tuple[int, int] | None = None) -> int:
    """A descriptor of the directory ``names`` below ``dir_fd``, reached one plain name
    at a time without following a link. With ``create_mode``, a missing directory is
    made (and given to ``owner``). The caller closes the descriptor.

    Raises UnsafeFile where a link or anything but a directory stands on the way."""
    current = os.dup(dir_fd)
    try:
        for name in names:
            if not name or name in (".", "..") or "/" in name or "\x00" in name:
                raise UnsafeFile(errno.EINVAL, "not a plain directory name")
            made = False
            if create_mode is not None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, create_mode, dir_fd=current)
                    made = True
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFile(exc.errno, "a link or a file where a directory "
                                     "was expected") from None
                raise
            os.close(current)
            current = child
            if made and owner is not None:  # on the descriptor: a swap cannot redirect it
                os.fchown(current, *owner)
        return current
    except BaseException:
        os.close(current)
        raise


def create_untrusted(name: str, *, dir_fd: int, mode: int,
                     owner: tuple[int, int] | None = None) -> int:
    """A new, empty regular file ``name`` in the directory ``dir_fd``, open for writing,
    with exactly ``mode`` (the umask does not apply) and, with ``owner``, given to it.
    FileExistsError if anything is already there, a planted symlink included."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise UnsafeFile(errno.EINVAL, "not a plain file name")
    fd = os.open(name, CREATE_FLAGS, mode, dir_fd=dir_fd)
    try:
        os.set_blocking(fd, True)
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_untrusted(path: Path | str, *, max_bytes: int) -> bytes:
    """The whole file, through :func:`open_untrusted`. A file that grows past the cap
    while it is read is refused too."""
    with open_untrusted(path, max_bytes=max_bytes) as (fd, _size):
        return read_bounded(fd, max_bytes)


def read_bounded(fd: int, max_bytes: int) -> bytes:
    """Every byte of an already vetted descriptor, or UntrustedFileTooLarge."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.pread(fd, min(READ_CHUNK, max_bytes + 1 - total), total)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise UntrustedFileTooLarge(errno.EFBIG, f"grew past the cap of {max_bytes}")
        chunks.append(chunk)


def copy_bounded(fd: int, dest_fd: int, max_bytes: int) -> int:
    """Every byte of an already vetted descriptor into ``dest_fd`` (emptied first), in
    the kernel: however large the file, the copy costs the caller no memory. Returns
    the count, or raises UntrustedFileTooLarge."""
    os.ftruncate(dest_fd, 0)
    os.lseek(dest_fd, 0, os.SEEK_SET)
    total = 0
    while True:
        sent = os.sendfile(dest_fd, fd, total, min(READ_CHUNK, max_bytes + 1 - total))
        if not sent:
            return total
        total += sent
        if total > max_bytes:
            raise UntrustedFileTooLarge(errno.EFBIG, f"grew past the cap of {max_bytes}")


async def run_untrusted(work: Callable[[], T], *, limiter: trio.CapacityLimiter,
                        deadline_s: float = DEFAULT_DEADLINE_S) -> T:
    """Run blocking work on untrusted files off the event loop, on ``limiter``, for at
    most ``deadline_s`` (then trio.TooSlowError). Cancellation never waits for the
    thread: it is abandoned, finishes on its own, and frees ``limiter`` when it does."""
    with trio.fail_after(deadline_s):
        return await trio.to_thread.run_sync(work, limiter=limiter, abandon_on_cancel=True)
