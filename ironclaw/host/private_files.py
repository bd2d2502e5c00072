"""Durable, private file primitives for the host's secrets: key custody and the audit
log both use them.

A write goes to a fresh temporary file in the destination's own directory (same
filesystem, so publishing it is one atomic rename or link), is fsynced before it
becomes visible, and the directory is fsynced after, so that after a crash the
destination holds either the whole old content or the whole new content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

# Temporary names start with a dot and carry this marker so a crashed writer's
# leftovers can be recognised and removed without touching anything else.
TEMP_MARKER = ".tmp-"

_GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH


class PrivatePathError(PermissionError):
    """A path that must be ours alone is not. Callers pass their own subclass."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(directory: Path, *, exact_mode: int | None = None,
                       error: type[Exception] = PrivatePathError) -> None:
    """Create ``directory`` as 0700 if missing, then insist nobody else can write it.

    A directory another user can write lets them swap a key file by rename, which
    no check on the file itself can catch.
    """
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    else:
        # mkdir's mode is filtered by the umask; chmod makes it exact.
        directory.chmod(0o700)
        fsync_dir(directory.parent)
    check_private_dir(directory, exact_mode=exact_mode, error=error)


def check_private_dir(directory: Path, *, exact_mode: int | None = None,
                      error: type[Exception] = PrivatePathError) -> None:
    """Ours, and writable by nobody else; with ``exact_mode``, exactly that mode."""
    info = os.stat(directory, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise error(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise error(f"{directory} is owned by uid {info.st_uid}, not us")
    if exact_mode is not None and stat.S_IMODE(info.st_mode) != exact_mode:
        raise error(f"{directory} has mode {stat.S_IMODE(info.st_mode):o}; "
                    f"it must be {exact_mode:o}")
    if info.st_mode & _GROUP_OTHER_WRITE:
        raise error(
            f"{directory} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
        )


def _temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(8)}")


def _write_temp(path: Path, data: bytes, mode: int, group: int | None) -> Path:
    temp = _temp_path_for(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            if group is not None:
                os.fchown(handle.fileno(), -1, group)
            # The umask may have narrowed the creation mode; the final mode is exact.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return temp


def atomic_replace(path: Path, data: bytes, *, mode: int = 0o600, group: int | None = None) -> None:
    """Publish ``data`` at ``path``, replacing whatever was there, all or nothing."""
    temp = _write_temp(path, data, mode, group)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_create(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Publish ``data`` at ``path`` only if nothing is there (``FileExistsError``).

    ``link`` is the no-clobber twin of ``rename``: it is atomic and refuses an
    existing destination, so a second writer can never overwrite a key.
    """
    temp = _write_temp(path, data, mode, None)
    try:
        os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(path.parent)


def rename_durably(source: Path, destination: Path) -> None:
    os.replace(source, destination)
    fsync_dir(destination.parent)


def read_private_file(
    path: Path,
    *,
    mode: int,
    max_size: int,
    error: type[Exception] = PrivatePathError,
) -> bytes:
    """Read a file that must be a regular file, ours, and exactly ``mode``.

    The checks run on the opened descriptor, so the file cannot be swapped between
    the check and the read. Raises ``FileNotFoundError`` if it does not exist.
    """
    check_private_dir(path.parent, error=error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise error(f"cannot open {path} safely: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise error(f"{path} is owned by uid {info.st_uid}, not us")
        if stat.S_IMODE(info.st_mode) != mode:
            raise error(f"{path} has mode {stat.S_IMODE(info.st_mode):o}, must be {mode:o}")
        return handle.read(max_size + 1)


def remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temporaries a crashed writer of ``directory/name`` left behind."""
    prefix = f".{name}{TEMP_MARKER}"
    removed = False
    for entry in directory.iterdir():
        if entry.name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            removed = True
    if removed:
        fsync_dir(directory)
