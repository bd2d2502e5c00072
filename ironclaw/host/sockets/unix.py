"""Creating and removing a session's unix socket safely.

The socket lives in a directory the host owns and nobody else can write (checked, not
assumed), so no other local user can plant or swap it. The socket itself is mode 0666:
the sandbox runs as a different uid and must be able to connect; the directory is what
guards it. A stale socket from a previous run is removed; anything else at the path is
refused. On the way out the socket is unlinked only if it is still the one this process
bound (same device and inode), so a successor's socket is never deleted.

Paths longer than ``sun_path`` allows (session ids run to 64 hex digits under a long
state directory) are bound through ``/proc/self/fd/<dir fd>/<name>``.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import trio

__all__ = ["BoundSocket", "UnsafeSocketPath", "bind_unix_socket", "unlink_if_ours"]

# Owner only: under the process runtime the agent runs as the control plane's own user;
# an OCI isolator hands each socket to the sandbox's uid at launch. Nobody else may
# connect, ever (a connection to model.sock spends the operator's credentials).
SOCKET_MODE = 0o600
# sun_path is 108 bytes on Linux including the terminating NUL.
MAX_SUN_PATH = 100
BACKLOG = 128

BoundSocket = tuple[trio.socket.SocketType, tuple[int, int]]


class UnsafeSocketPath(OSError):
    """The socket path is not somewhere the host alone controls."""


def _check_directory(directory: Path) -> None:
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketPath(f"{directory} is not a directory (or is a symlink)")
    if info.st_uid != os.geteuid():
        raise UnsafeSocketPath(f"{directory} is not owned by the host user")
    if info.st_mode & 0o022:
        raise UnsafeSocketPath(f"{directory} is writable by group or others")


def _prepare(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    _check_directory(path.parent)
    _remove_stale(path)
    return path


def _remove_stale(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UnsafeSocketPath(f"{path} exists and is not a socket")
    path.unlink()


async def bind_unix_socket(path: Path) -> BoundSocket:
    """A listening socket at ``path`` (mode 0666) and its (device, inode) identity."""
    path = _prepare(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        if len(os.fsencode(path)) <= MAX_SUN_PATH:
            await sock.bind(os.fspath(path))
        else:
            dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                await sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
            finally:
                os.close(dir_fd)
        bound = True
        # Nobody can connect before listen(), so widening the mode here is race-free.
        os.chmod(path, SOCKET_MODE)
        info = os.lstat(path)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        if bound:
            path.unlink(missing_ok=True)
        raise
    return sock, (info.st_dev, info.st_ino)


def unlink_if_ours(path: Path, identity: tuple[int, int]) -> None:
    try:
        info = os.lstat(path)
    except OSError:
        return
    if (info.st_dev, info.st_ino) == identity and stat.S_ISSOCK(info.st_mode):
        path.unlink(missing_ok=True)
