"""Re-keying one queue file: copy, re-encrypt the copy, swap it in.

The live file is never opened with SQLite. Its bytes are copied through the hardened
snapshot copy (``copy_snapshot``: fence-aware, and the outbound file is the agent's,
so it is opened as hostile), into a scratch file in the session's own directory (the
host's; no sandbox writes there). The copy's schema is checked under the old key
(``open_snapshot``) before anything else reads it; only then is the copy opened for
``PRAGMA rekey``. The re-keyed copy is written beside the live file, with its owner
and mode, and replaces it with one ``rename``, which swaps the name whatever the name
pointed at (a link the agent planted is replaced, never followed). The file's writer
is stopped meanwhile: the caller holds the sandbox and the host's inbound writer down.

Each step is idempotent, so a rotation cut short is finished by running it again: a
file that already opens under the new key is left as it is.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sqlcipher3

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.queue.errors import QueueError
from ironclaw.contract.queue.files import DEFAULT_MAX_FILE_BYTES, SnapshotReader, copy_snapshot
from ironclaw.contract.queue.snapshot_db import apply_key, harden, open_snapshot
from ironclaw.contract.untrusted_files import copy_bounded

SCRATCH_PREFIX = ".rekey-"

logger = logging.getLogger(__name__)


class Rekeyed(enum.Enum):
    NOW = "rekeyed"
    ALREADY = "already under the new key"
    ABSENT = "no file yet"


def opens_under(db_path: Path, key: RawKey, ddl: str) -> bool:
    """The file, read as the reader reads it, decrypts under ``key`` to the contract's
    schema."""
    try:
        SnapshotReader(db_path, key, ddl).verify()
    except QueueError:
        return False
    return True


def rekey_queue_file(db_path: Path, scratch_dir: Path, old: RawKey, new: RawKey,
                     ddl: str) -> Rekeyed:
    """Re-encrypt the queue file under ``new``; raises ``QueueError`` (the file opens
    under neither key, or is not a lone regular file) and leaves it as it was."""
    if not os.path.lexists(db_path):
        return Rekeyed.ABSENT
    if opens_under(db_path, new, ddl):
        return Rekeyed.ALREADY
    fd, name = tempfile.mkstemp(prefix=SCRATCH_PREFIX, suffix=".db", dir=scratch_dir)
    scratch = Path(name)
    try:
        try:
            copy_snapshot(db_path, fd)
        finally:
            os.close(fd)
        open_snapshot(scratch, old, ddl).close()  # the old key's, with our schema
        conn = sqlcipher3.connect(str(scratch), isolation_level=None)
        try:
            # The agent holds the outbound key, so it can craft a file that decrypts
            # and passes the schema check: rewrite its pages under the reader's limits.
            harden(conn, scratch)
            apply_key(conn, old)
            conn.execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
        finally:
            conn.close()
        _take_place_of(scratch, db_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    if not opens_under(db_path, new, ddl):
        raise QueueError(f"{db_path.name} does not open under its new key")
    return Rekeyed.NOW


def _take_place_of(scratch: Path, db_path: Path) -> None:
    """Copy the re-keyed file beside the live one (the queue directory may be a
    volume of its own, and a rename does not cross file systems) with the live file's
    owner and mode, make it durable, and swap it in. The copy beside it is a fresh
    inode of ours (``mkstemp``: ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name,
    while the sandbox is stopped), written and set up through its descriptor only. A
    journal beside the live file belongs to the old bytes: it goes first (the writer
    is stopped, and the copy was taken between commits, so it is not a hot one)."""
    info = os.lstat(db_path)
    fd, name = tempfile.mkstemp(prefix=SCRATCH_PREFIX, suffix=".db", dir=db_path.parent)
    try:
        source = os.open(scratch, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            copy_bounded(source, fd, DEFAULT_MAX_FILE_BYTES)
        finally:
            os.close(source)
        if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            os.fchown(fd, info.st_uid, info.st_gid)
        os.fchmod(fd, info.st_mode & 0o777)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(db_path.with_name(db_path.name + "-journal"))
    os.replace(name, db_path)
    directory = os.open(db_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_scratch(directories: Iterable[Path]) -> None:
    """Copies a crash left behind: names are listed and unlinked, nothing is opened
    (an unlink never follows a link). The outbound folder is the agent's, so a name
    under the prefix may be anything it planted: one that cannot be unlinked (a
    folder) is left and logged, and never stops the recovery of the others."""
    for directory in directories:
        if directory.is_dir() and not directory.is_symlink():
            for entry in directory.iterdir():
                if entry.name.startswith(SCRATCH_PREFIX):
                    try:
                        entry.unlink()
                    except OSError as exc:
                        logger.warning("left %s in %s: %s", entry.name[:80], directory,
                                       exc.strerror)
