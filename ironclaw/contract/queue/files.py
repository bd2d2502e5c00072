"""Opening queue files: the fenced writer and the snapshot reader.

Writer: one long-lived SQLCipher connection, ``journal_mode=DELETE`` (WAL needs a
shared-memory index whose locks do not cross gVisor), ``synchronous=FULL``, mmap off.
Every use of the connection happens inside a fence window (see fence.py), including
the first read after open, because that read may roll back a hot journal left by a
crashed writer and so modify the file.

Byte cap (optional, the host's inbound writer sets one): a transaction opened with
``capped=True`` is rolled back with ``QueueFull`` when it would leave the file's pages
in use, plus its live journal, above the cap. It is checked twice inside the fence
window: before the transaction's statements run (a full file costs no work) and
after them, before COMMIT, on the transaction's own view of the file; so the file
never holds more than the cap. Pages freed by a DELETE go to SQLite's free list and
are reused before the file grows, so the file's size stays at the most it ever held
in use, never above the cap. Transactions that only settle or delete rows (acks,
progress, pruning) are not capped: refusing them would keep a full file full.

Reader: never opens the live file with SQLite. It copies the file's bytes while the
fence holds one even value before and after the copy, writes the copy (still
ciphertext) to a private scratch file, and opens that read-only and immutable. So a
reader never sees a torn commit, never trips over the writer's journal, and holds
the live file for one ``pread`` only, which a continuously committing writer cannot
starve. The live file and its fence belong to the other side, so both are opened
as hostile (untrusted_files.py), and the copy's schema is checked before any query
(snapshot_db.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import sqlcipher3

from ..cipher import BUSY_TIMEOUT_MS, RawKey
from ..untrusted_files import UnsafeFile, UntrustedFileTooLarge, copy_bounded, open_untrusted
from .errors import (
    QueueBusy,
    QueueError,
    QueueFileUnsafe,
    QueueFull,
    QueueNotReady,
    QueueTooLarge,
    QueueWriteRefused,
    WrongKeyOrCorrupt,
)
from .fence import FenceUnreadable, WriterFence, decode_fence
from .snapshot_db import apply_key, open_snapshot, query_failed, split_ddl, uri

# sqlcipher3 ships no type information; a connection is typed loosely on purpose.
Connection: TypeAlias = Any
T = TypeVar("T")

# A reader will not copy more than this; an honest queue is pruned far below it.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
# How long a reader keeps trying for a clean snapshot before reporting QueueBusy.
DEFAULT_SNAPSHOT_BUDGET_S = 5.0
# How long a reader spins on an odd fence before it starts sleeping between tries.
SPIN_S = 0.005


def fence_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".fence")


def _force_first_read(conn: Connection) -> None:
    """PRAGMA key always answers ok; only reading a page tells a wrong key."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        raise WrongKeyOrCorrupt(f"cannot decrypt: {exc}") from None


class FencedWriterFile:
    """The single writer of one queue file (per side). Thread-safe: calls from
    several worker threads are serialised, and writers in other processes of the
    same side are serialised by the fence's lock."""

    def __init__(self, db_path: Path, key: RawKey, ddl: str, *, vfs: str | None = None,
                 durable_fence: bool = True, max_bytes: int | None = None) -> None:
        self.db_path = db_path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fence = WriterFence(fence_path_for(db_path), durable=durable_fence)
        self._closed = False
        params = {"vfs": vfs} if vfs else {}
        try:
            with self._fence.writing():
                self._conn = sqlcipher3.connect(
                    uri(db_path, **params), uri=True, isolation_level=None,
                    check_same_thread=False)
                try:
                    apply_key(self._conn, key)
                    _force_first_read(self._conn)
                    self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                    self._conn.execute("PRAGMA journal_mode = DELETE").fetchone()
                    self._conn.execute("PRAGMA synchronous = FULL")
                    self._conn.execute("PRAGMA mmap_size = 0")
                    self._conn.execute("BEGIN IMMEDIATE")
                    for statement in split_ddl(ddl):
                        self._conn.execute(statement)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.close()
                    raise
            os.chmod(db_path, 0o644)
        except BaseException:
            self._fence.close()
            raise

    @contextlib.contextmanager
    def transaction(self, *, capped: bool = False) -> Iterator[Connection]:
        """One committed transaction inside one fence window. With ``capped`` (and a
        ``max_bytes``), one that would leave the file above its cap is rolled back
        and raises QueueFull."""
        with self._lock:
            if self._closed:
                raise QueueWriteRefused("writer is closed")
            with self._fence.writing(self._file_size):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if capped:
                        self._check_cap()
                    yield self._conn
                    if capped:
                        self._check_cap()
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                else:
                    try:
                        self._conn.execute("COMMIT")
                    except BaseException:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read on the writer's own connection, without a fence window: no fsync, no
        pacing. Safe because the writers' lock keeps every same-side writer out, and a
        read can only modify the file by rolling back a crashed writer's hot journal,
        so when a journal is present the read takes a full window instead."""
        with self._lock:
            if self._closed:
                raise QueueWriteRefused("writer is closed")
            with self._fence.locked():
                if self.db_path.with_name(self.db_path.name + "-journal").exists():
                    needs_window = True
                else:
                    needs_window = False
                    self._conn.execute("BEGIN")
                    try:
                        yield self._conn
                    finally:
                        self._conn.execute("COMMIT")
            if needs_window:
                with self._fence.writing(self._file_size):
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._conn
                    finally:
                        self._conn.execute("COMMIT")

    def used_bytes(self) -> int:
        """Bytes the file's pages in use and its live journal take, as this
        connection sees them (inside a transaction: including its own changes)."""
        (page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
        (pages,) = self._conn.execute("PRAGMA page_count").fetchone()
        (free,) = self._conn.execute("PRAGMA freelist_count").fetchone()
        try:
            journal = os.stat(self.db_path.with_name(self.db_path.name + "-journal")).st_size
        except OSError:
            journal = 0
        # SQLCipher answers some pragmas as text.
        return (int(pages) - int(free)) * int(page_size) + journal

    def _check_cap(self) -> None:
        if self.max_bytes is None:
            return
        used = self.used_bytes()
        if used > self.max_bytes:
            raise QueueFull(f"{self.db_path.name} would hold {used} bytes, over its cap "
                            f"of {self.max_bytes}", used_bytes=used, cap_bytes=self.max_bytes)

    def _file_size(self) -> int:
        try:
            return os.stat(self.db_path).st_size
        except OSError:
            return 0

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._fence.close()


# The fence is 24 bytes; a reader accepts a little slack, never a large file.
MAX_FENCE_BYTES = 4096


@contextlib.contextmanager
def _opened_hostile(path: Path, max_bytes: int) -> Iterator[int]:
    """A file the other side writes, opened as hostile: typed queue errors only."""
    try:
        with open_untrusted(path, max_bytes=max_bytes) as (fd, _size):
            yield fd
    except FileNotFoundError:
        raise QueueNotReady(f"{path.name} does not exist yet") from None
    except UnsafeFile as exc:
        raise QueueFileUnsafe(f"{path.name}: {exc.strerror}") from None
    except UntrustedFileTooLarge:
        raise QueueTooLarge(f"{path.name} exceeds {max_bytes} bytes") from None


def copy_snapshot(db_path: Path, dest_fd: int, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                  budget_s: float = DEFAULT_SNAPSHOT_BUDGET_S) -> int:
    """Copy the file as of one committed state into ``dest_fd`` (the reader's own
    scratch file) and return its size. The copy runs in the kernel, so a file at the
    cap costs the reader no memory. Retries while the writer is mid-commit; raises
    QueueBusy if no clean window appears within the budget.

    While the fence reads odd the reader spins on it for a moment, so that it starts
    copying at the very beginning of the next even window instead of sleeping past
    it; only when the writer stays odd (a long commit, or a crashed writer) does it
    back off with jittered sleeps. Both files are opened as hostile (a symlink, FIFO,
    device or hard link raises QueueFileUnsafe), and the budget bounds the whole
    call: no step of it can wait on the writer."""
    deadline = time.monotonic() + budget_s
    pause = 0.0005
    with _opened_hostile(fence_path_for(db_path), MAX_FENCE_BYTES) as fence_fd:
        while True:
            spin_until = time.monotonic() + SPIN_S
            while True:
                try:
                    before = decode_fence(os.pread(fence_fd, 16, 0))
                except FenceUnreadable:
                    if not os.path.lexists(db_path):  # lstat: opens nothing
                        raise QueueNotReady(f"{db_path.name} does not exist yet") from None
                    before = -1
                if before >= 0 and before % 2 == 0:
                    with _opened_hostile(db_path, max_bytes) as db_fd:
                        try:
                            size = copy_bounded(db_fd, dest_fd, max_bytes)
                        except UntrustedFileTooLarge:
                            raise QueueTooLarge(
                                f"{db_path.name} exceeds {max_bytes} bytes") from None
                    if decode_fence(os.pread(fence_fd, 16, 0)) == before:
                        return size
                if time.monotonic() >= spin_until:
                    break
            if time.monotonic() >= deadline:
                raise QueueBusy(f"no stable snapshot of {db_path.name} within {budget_s}s")
            # Jitter so a reader does not fall into lock-step with a periodic writer.
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.02)


class SnapshotReader:
    """Reads one queue file through snapshots. Holds no connection between reads, so
    every read sees the latest committed state. ``ddl`` is the contract's DDL for the
    file: a snapshot whose schema differs is refused (QueueSchemaError) before any
    query runs on it."""

    def __init__(self, db_path: Path, key: RawKey, ddl: str, *,
                 scratch_dir: Path | None = None,
                 max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 budget_s: float = DEFAULT_SNAPSHOT_BUDGET_S) -> None:
        self.db_path = db_path
        self._key = key
        self._ddl = ddl
        self._scratch = scratch_dir or default_scratch_dir()
        self._max_bytes = max_bytes
        self._budget_s = budget_s
        self.last_copy_bytes = 0

    def verify(self) -> None:
        """Fail now on a wrong key or a foreign schema, rather than at first use."""
        self.read(lambda conn: None)

    def fence(self) -> int | None:
        """The fence counter, read through the hardened opener; None if missing or
        torn. Raises QueueFileUnsafe for anything but a plain small file."""
        try:
            with _opened_hostile(fence_path_for(self.db_path), MAX_FENCE_BYTES) as fd:
                return decode_fence(os.pread(fd, 16, 0))
        except (QueueNotReady, FenceUnreadable):
            return None

    def read(self, query: Callable[[Connection], T]) -> T:
        fd, name = tempfile.mkstemp(prefix="ironclaw-snap-", suffix=".db", dir=self._scratch)
        try:
            try:
                self.last_copy_bytes = copy_snapshot(
                    self.db_path, fd, max_bytes=self._max_bytes, budget_s=self._budget_s)
            finally:
                os.close(fd)
            conn = open_snapshot(Path(name), self._key, self._ddl)
            try:
                try:
                    return query(conn)
                except sqlcipher3.DatabaseError as exc:
                    raise query_failed(exc) from None
            finally:
                conn.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def default_scratch_dir() -> Path:
    """Snapshots hold ciphertext only, but a RAM-backed directory keeps them off disk
    and fast; /dev/shm on the host, the tmpfs /tmp inside the sandbox."""
    for candidate in ("/dev/shm", tempfile.gettempdir()):
        path = Path(candidate)
        if path.is_dir() and os.access(path, os.W_OK | os.X_OK):
            return path
    raise QueueError("no writable scratch directory for queue snapshots")
