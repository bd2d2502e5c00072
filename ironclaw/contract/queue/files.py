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
starve.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import sqlcipher3

from ..cipher import BUSY_TIMEOUT_MS, CIPHER_COMPATIBILITY, RawKey
from .errors import (
    QueueBusy,
    QueueError,
    QueueFull,
    QueueNotReady,
    QueueSchemaError,
    QueueTooLarge,
    QueueWriteRefused,
    WrongKeyOrCorrupt,
)
from .fence import FenceUnreadable, WriterFence, decode_fence

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


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path))}" + (f"?{query}" if query else "")


def _apply_key(conn: Connection, key: RawKey) -> None:
    conn.execute(key.pragma())
    conn.execute(f"PRAGMA cipher_compatibility = {CIPHER_COMPATIBILITY}")
    conn.execute("PRAGMA cipher_log_level = NONE")


def _force_first_read(conn: Connection) -> None:
    """PRAGMA key always answers ok; only reading a page tells a wrong key."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        raise WrongKeyOrCorrupt(f"cannot decrypt: {exc}") from None


def _check_tables(conn: Connection, required: tuple[str, ...]) -> None:
    names = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    names = {n.decode() if isinstance(n, bytes) else n for n in names}
    missing = [t for t in required if t not in names]
    if missing:
        raise QueueSchemaError(f"missing tables: {', '.join(missing)}")


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
                    _uri(db_path, **params), uri=True, isolation_level=None,
                    check_same_thread=False)
                try:
                    _apply_key(self._conn, key)
                    _force_first_read(self._conn)
                    self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                    self._conn.execute("PRAGMA journal_mode = DELETE").fetchone()
                    self._conn.execute("PRAGMA synchronous = FULL")
                    self._conn.execute("PRAGMA mmap_size = 0")
                    self._conn.execute("BEGIN IMMEDIATE")
                    for statement in _split_ddl(ddl):
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


def _split_ddl(ddl: str) -> list[str]:
    # executescript() would COMMIT our open transaction first; run statements one by one.
    return [s.strip() for s in ddl.split(";") if s.strip()]


def copy_snapshot(db_path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                  budget_s: float = DEFAULT_SNAPSHOT_BUDGET_S) -> bytes:
    """Bytes of the file as of one committed state. Retries while the writer is
    mid-commit; raises QueueBusy if no clean window appears within the budget.

    While the fence reads odd the reader spins on it for a moment, so that it starts
    copying at the very beginning of the next even window instead of sleeping past
    it; only when the writer stays odd (a long commit, or a crashed writer) does it
    back off with jittered sleeps."""
    fence = fence_path_for(db_path)
    deadline = time.monotonic() + budget_s
    pause = 0.0005
    try:
        fence_fd = os.open(fence, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise QueueNotReady(f"{db_path.name} does not exist yet") from None
    try:
        while True:
            spin_until = time.monotonic() + SPIN_S
            while True:
                try:
                    before = decode_fence(os.pread(fence_fd, 16, 0))
                except FenceUnreadable:
                    if not db_path.exists():
                        raise QueueNotReady(f"{db_path.name} does not exist yet") from None
                    before = -1
                if before >= 0 and before % 2 == 0:
                    try:
                        data = _read_all(db_path, max_bytes)
                    except FileNotFoundError:
                        raise QueueNotReady(f"{db_path.name} does not exist yet") from None
                    if decode_fence(os.pread(fence_fd, 16, 0)) == before:
                        return data
                if time.monotonic() >= spin_until:
                    break
            if time.monotonic() >= deadline:
                raise QueueBusy(f"no stable snapshot of {db_path.name} within {budget_s}s")
            # Jitter so a reader does not fall into lock-step with a periodic writer.
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.02)
    finally:
        os.close(fence_fd)


def _read_all(path: Path, max_bytes: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.pread(fd, 1 << 20, total)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > max_bytes:
                raise QueueTooLarge(f"{path.name} exceeds {max_bytes} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)


class SnapshotReader:
    """Reads one queue file through snapshots. Holds no connection between reads, so
    every read sees the latest committed state."""

    def __init__(self, db_path: Path, key: RawKey, required_tables: tuple[str, ...], *,
                 scratch_dir: Path | None = None,
                 max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 budget_s: float = DEFAULT_SNAPSHOT_BUDGET_S) -> None:
        self.db_path = db_path
        self._key = key
        self._required = required_tables
        self._scratch = scratch_dir or default_scratch_dir()
        self._max_bytes = max_bytes
        self._budget_s = budget_s

    def verify(self) -> None:
        """Fail now on a wrong key or a foreign schema, rather than at first use."""
        self.read(lambda conn: None)

    def read(self, query: Callable[[Connection], T]) -> T:
        data = copy_snapshot(self.db_path, max_bytes=self._max_bytes, budget_s=self._budget_s)
        fd, name = tempfile.mkstemp(prefix="ironclaw-snap-", suffix=".db", dir=self._scratch)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            conn = sqlcipher3.connect(_uri(Path(name), mode="ro", immutable="1"), uri=True,
                                      isolation_level=None)
            try:
                conn.text_factory = bytes
                _apply_key(conn, self._key)
                conn.execute("PRAGMA query_only = ON")
                _force_first_read(conn)
                _check_tables(conn, self._required)
                try:
                    return query(conn)
                except sqlcipher3.DatabaseError as exc:
                    raise QueueSchemaError(f"query failed on a clean snapshot: {exc}") from None
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
