"""``AuditLog``: the Trio face of the audit log.

All blocking file work runs on worker threads. Appends (and opening, closing, and
taking a snapshot of the head) go through a write limiter of one, which serialises
them and hands out seqs in arrival order (Trio's limiter is FIFO). Readers (tail,
verify, export) use a limiter of their own, read only up to the size of the last
durable append, and work in bounded chunks, so a long export or verify neither
blocks appends nor shields itself from cancellation for more than one chunk.

An append cancelled while waiting for its turn appends nothing; once its thread has
started it completes, and the entry is durable even if the caller is then cancelled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path

import trio

from ironclaw.contract.clock import now_us

from .entry import (
    KEY_BYTES,
    AuditEntry,
    FieldValue,
    UnparsableEntry,
    check_fields,
    check_kind,
    decode_line,
    mac_ok,
)
from .errors import AuditLogCorrupt, AuditLogUnavailable
from .files import (
    BLOCK_BYTES,
    AuditPaths,
    find_start_after,
    read_fd,
    read_lines,
    read_tail_lines,
    seq_of,
)
from .verify import ChainVerifier, VerifyReport
from .writer import LogWriter, Tip

MAX_TAIL = 1000
_VERIFY_CHUNK = BLOCK_BYTES * 16


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[int]:
    fd = read_fd(path)
    try:
        yield fd
    finally:
        os.close(fd)


class AuditLog:
    """The tamper-evident audit log under ``<state>/audit/``.

    ``key`` is the 32-byte audit sub-key, ``KeyStore.subkey(Purpose.AUDIT_CHAIN)``;
    it survives master rotation, so the chain never needs re-keying.
    """

    def __init__(self, state_dir: Path, key: bytes, *,
                 clock: Callable[[], int] = now_us) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the audit key is exactly {KEY_BYTES} bytes")
        self.paths = AuditPaths.in_state_dir(state_dir)
        self._key = key
        self._clock = clock
        self._writer: LogWriter | None = None
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        # What opening had to repair after a crash, for the caller to report; the
        # repair is also recorded in the log itself as an ``audit.recovered`` entry.
        self.recovered: tuple[str, ...] = ()

    async def run(self, *, task_status: trio.TaskStatus[AuditLog] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Actor form: open, report ready, hold the log open until cancelled."""
        await self.open()
        try:
            task_status.started(self)
            await trio.sleep_forever()
        finally:
            await self.aclose()

    async def open(self) -> None:
        if self._writer is not None:
            raise AuditLogUnavailable("the audit log is already open")
        writer, repair = await trio.to_thread.run_sync(
            lambda: LogWriter.open(self.paths, self._key, self._clock()),
            limiter=self._write_limiter)
        self._writer = writer
        self.recovered = repair.notes

    async def aclose(self) -> None:
        """Shielded, so a cancelled control plane still closes the file."""
        with trio.CancelScope(shield=True):
            writer, self._writer = self._writer, None
            if writer is not None:
                await trio.to_thread.run_sync(writer.close, limiter=self._write_limiter)

    def _open_writer(self) -> LogWriter:
        if self._writer is None:
            raise AuditLogUnavailable("the audit log is not open")
        return self._writer

    def _tip(self) -> Tip:
        return self._open_writer().tip

    @property
    def last_seq(self) -> int:
        return self._tip().seq

    async def append(self, kind: str, /, **fields: FieldValue) -> int:
        """Append one entry; returns its seq once it is durable and under the signed head.

        ``fields`` follow the ids-and-counts rule (see the package docstring); anything
        else raises ``AuditFieldRejected`` before a seq is taken.
        """
        checked_kind = check_kind(kind)
        checked = check_fields(fields)
        writer = self._open_writer()
        entry = await trio.to_thread.run_sync(
            lambda: writer.append(checked_kind, checked, self._clock()),
            limiter=self._write_limiter)
        return entry.seq

    async def tail(self, limit: int) -> list[AuditEntry]:
        """The last ``limit`` entries, oldest first, read backwards from the end of the
        file. Each is MAC-checked and linked to its neighbour and, at the end, to the
        tip; a window that fails raises ``AuditLogCorrupt`` rather than show forgeries."""
        if not 0 <= limit <= MAX_TAIL:
            raise ValueError(f"tail limit must be between 0 and {MAX_TAIL}")
        tip = self._tip()
        if limit == 0 or tip.size == 0:
            return []
        return await trio.to_thread.run_sync(self._tail_sync, tip, limit,
                                             limiter=self._read_limiter)

    def _tail_sync(self, tip: Tip, limit: int) -> list[AuditEntry]:
        with _reading(self.paths.log) as fd:
            lines = read_tail_lines(fd, tip.size, limit).lines
        entries: list[AuditEntry] = []
        for line in lines:
            try:
                entry = decode_line(line)
            except UnparsableEntry as exc:
                raise AuditLogCorrupt(f"unparsable line near the tail: {exc.reason}") from None
            if not mac_ok(self._key, entry):
                raise AuditLogCorrupt(f"seq {entry.seq}: bad mac")
            if entries and (entry.seq != entries[-1].seq + 1 or entry.prev != entries[-1].mac):
                raise AuditLogCorrupt(f"seq {entry.seq}: does not chain to seq {entries[-1].seq}")
            entries.append(entry)
        if entries and (entries[-1].seq != tip.seq or entries[-1].mac != tip.mac):
            raise AuditLogCorrupt(f"the last entry is not the tip (seq {tip.seq})")
        return entries

    async def verify(self) -> VerifyReport:
        """Stream the whole file once (bounded memory) and check it against head.json.

        Checks the log as of this call: appends made meanwhile are left for next time.
        """
        writer = self._open_writer()
        head, end = await trio.to_thread.run_sync(writer.head_snapshot,
                                                  limiter=self._write_limiter)
        verifier = ChainVerifier(self._key)
        offset = 0
        while offset < end:
            size = min(_VERIFY_CHUNK, end - offset)
            got = await trio.to_thread.run_sync(self._verify_chunk, verifier, offset, size,
                                                limiter=self._read_limiter)
            offset += got
            if got < size:
                verifier.add_problem(f"audit.log is shorter than the last durable append "
                                     f"({offset} < {end} bytes): cut or edited in place")
                break
        return verifier.finish(head)

    def _verify_chunk(self, verifier: ChainVerifier, offset: int, size: int) -> int:
        with _reading(self.paths.log) as fd:
            data = os.pread(fd, size, offset)
        verifier.feed(data)
        return len(data)

    async def export(self, after_seq: int = 0) -> AsyncGenerator[bytes, None]:
        """The log's lines after ``after_seq`` as stored (NDJSON), in chunks of whole
        lines, up to the last durable append at the time of the call.

        A raw copy for a SIEM: it does not verify (``verify`` does). It holds no file
        open between chunks, so abandoning the generator leaks nothing (close it with
        ``contextlib.aclosing`` all the same).
        """
        if after_seq < 0:
            raise ValueError("after_seq must not be negative")
        end = self._tip().size
        offset = await trio.to_thread.run_sync(self._seek_sync, end, after_seq,
                                               limiter=self._read_limiter)
        found = False
        while offset < end:
            chunk, offset = await trio.to_thread.run_sync(self._lines_sync, offset, end,
                                                          limiter=self._read_limiter)
            if not found:
                chunk, found = _drop_through(chunk, after_seq)
            if chunk:
                yield chunk

    def _seek_sync(self, end: int, after_seq: int) -> int:
        if after_seq == 0 or end == 0:
            return 0
        with _reading(self.paths.log) as fd:
            return find_start_after(fd, end, after_seq)

    def _lines_sync(self, offset: int, end: int) -> tuple[bytes, int]:
        with _reading(self.paths.log) as fd:
            return read_lines(fd, offset, end)


def _drop_through(chunk: bytes, after_seq: int) -> tuple[bytes, bool]:
    """Drop the lines of ``chunk`` before the first one past ``after_seq``."""
    start = 0
    while start < len(chunk):
        stop = chunk.index(b"\n", start) + 1
        seq = seq_of(chunk[start:stop - 1])
        if seq is not None and seq > after_seq:
            return chunk[start:], True
        start = stop
    return b"", False


@contextlib.asynccontextmanager
async def open_audit_log(state_dir: Path, key: bytes, *,
                         clock: Callable[[], int] = now_us) -> AsyncIterator[AuditLog]:
    """For callers outside the actor tree (CLI, tests). The log owns no task, so no
    nursery is needed and errors arrive unwrapped."""
    log = AuditLog(state_dir, key, clock=clock)
    await log.open()
    try:
        yield log
    finally:
        await log.aclose()
