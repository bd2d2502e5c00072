"""One control plane per state directory, held by the kernel.

Two planes on one state directory would each run an agent for the same session: two
writers on one outbound queue, which is the very thing exactly-once delivery rests on
never happening. So the plane holds an exclusive ``flock`` on ``<state>/daemon.lock``
while it runs. The kernel drops it when the process dies, however it dies (a SIGKILLed
plane's successor starts at once), and the descriptor is close-on-exec, so no sandbox or
runtime the plane starts can outlive it holding the lock. Offline commands that must not
race a running plane (``rotate-master``) take the same lock, and refuse when it is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "StateDirInUse", "hold_state_dir"]

LOCK_NAME = "daemon.lock"


class StateDirInUse(RuntimeError):
    """Another process holds the state directory's lock."""


@contextlib.contextmanager
def hold_state_dir(state_dir: Path, *, what: str) -> Iterator[None]:
    """Hold the state directory's lock for the block, or raise StateDirInUse at once.
    ``what`` names the holder in the lock file, for the message a second one gets."""
    fd = os.open(state_dir / LOCK_NAME,
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("ascii", "replace").strip() or "unknown"
            raise StateDirInUse(f"{state_dir} is in use ({holder}); stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}\n".encode("ascii", "replace"), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock
