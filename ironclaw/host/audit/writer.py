"""The blocking writer: opening (with crash repair) and appending. Worker thread only.

An append is: write the line with O_APPEND, fsync audit.log, then publish the new
signed head atomically. Only then does the in-memory tip move and the caller hear the
seq, so an acknowledged entry survives a crash and is covered by the head.

A crash can leave, beyond the signed head, at most one thing: a torn line (no
newline, or garbage) or one whole entry whose head update never happened. Opening
removes the first and rolls the head forward over the second, and nothing else: a
log that disagrees with its head in any other way is refused (``AuditLogCorrupt``),
because guessing would let a truncation pass as a crash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from .entry import (
    GENESIS_HEAD,
    AuditEntry,
    FieldValue,
    Head,
    HeadInvalid,
    UnparsableEntry,
    decode_head,
    decode_line,
    encode_head,
    mac_ok,
    seal,
)
from .errors import AuditLogCorrupt, AuditLogUnavailable, AuditWriteError
from .files import (
    AuditPaths,
    ensure_private_dir,
    last_line_boundary,
    open_log_for_append,
    read_head_bytes,
    read_tail_lines,
    remove_stale_temps,
    write_all,
    write_head_atomically,
)

RECOVERED_KIND = "audit.recovered"


@attrs.frozen
class Tip:
    """The last durable entry and the log's size just after it."""

    seq: int
    mac: str
    size: int


@attrs.frozen
class Repair:
    removed_bytes: int
    rolled_forward_to: int | None
    notes: tuple[str, ...]


def _decoded(line: bytes) -> AuditEntry | None:
    try:
        return decode_line(line)
    except UnparsableEntry:
        return None


def _well_formed(key: bytes, line: bytes) -> AuditEntry | None:
    entry = _decoded(line)
    return entry if entry is not None and mac_ok(key, entry) else None


def _signed_head(paths: AuditPaths, key: bytes, size: int) -> Head | None:
    data = read_head_bytes(paths.head)
    if data is None:
        if size:
            raise AuditLogCorrupt("head.json is missing but audit.log holds entries")
        return None
    try:
        return decode_head(data, key)
    except HeadInvalid as exc:
        raise AuditLogCorrupt(exc.reason) from None


def recover(fd: int, paths: AuditPaths, key: bytes) -> tuple[Tip, Repair]:
    """Reconcile the log's tail with the signed head; read only the last two lines."""
    size = os.fstat(fd).st_size
    head = _signed_head(paths, key, size)
    if head is None:  # a new log
        write_head_atomically(paths.head, encode_head(key, GENESIS_HEAD))
        return Tip(0, GENESIS_HEAD.mac, 0), Repair(0, None, ())
    notes: list[str] = []
    cut = size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        cut = last_line_boundary(fd, size)
        notes.append(f"removed a torn last line ({size - cut} bytes without a newline)")
    lines = read_tail_lines(fd, cut, 2).lines
    decoded = _decoded(lines[-1]) if lines else None
    last = decoded if decoded is not None and mac_ok(key, decoded) else None
    # Only an unparsable line can be a torn write; a well-formed one with a bad MAC
    # is a forgery or an edit, and is refused below like any other disagreement.
    torn = bool(lines) and decoded is None
    rolled: int | None = None
    at_head = (not lines and head.seq == 0) or (
        last is not None and last.seq == head.seq and last.mac == head.mac)
    if at_head:
        pass
    elif last is not None and last.seq == head.seq + 1 and last.prev == head.mac:
        rolled = last.seq
        notes.append(f"rolled the signed head forward from seq {head.seq} to seq {last.seq} "
                     f"(crash between append and head update)")
    elif torn and _is_head(key, head, lines[:-1]):
        cut -= len(lines[-1]) + 1
        notes.append(f"removed an unreadable last line after seq {head.seq} "
                     f"({len(lines[-1]) + 1} bytes)")
    else:
        ends = (f"seq {last.seq}" if last else f"seq {decoded.seq} (bad mac)" if decoded
                else "an unreadable line" if lines else "no entry")
        raise AuditLogCorrupt(f"audit.log ends at {ends} but the signed head is at seq "
                              f"{head.seq}: truncated or altered; run verify")
    if cut < size:
        os.ftruncate(fd, cut)
        os.fsync(fd)
    tip = Tip(head.seq, head.mac, cut)
    if rolled is not None and last is not None:
        write_head_atomically(paths.head, encode_head(key, Head(last.seq, last.mac)))
        tip = Tip(last.seq, last.mac, cut)
    return tip, Repair(size - cut, rolled, tuple(notes))


def _is_head(key: bytes, head: Head, before: tuple[bytes, ...]) -> bool:
    """Whether the line before the unreadable one (or its absence) is the signed head."""
    if not before:
        return head == GENESIS_HEAD
    entry = _well_formed(key, before[-1])
    return entry is not None and entry.seq == head.seq and entry.mac == head.mac


class LogWriter:
    """Owns the append descriptor and the tip. Its methods must be called one at a
    time (the audit log's write limiter of one sees to that)."""

    def __init__(self, paths: AuditPaths, key: bytes, fd: int, tip: Tip) -> None:
        self.paths = paths
        self._key = key
        self._fd: int | None = fd
        self._broken: str | None = None
        # Replaced whole, never mutated: readers on other threads may read it any time.
        self.tip = tip

    @classmethod
    def open(cls, paths: AuditPaths, key: bytes, at: int) -> tuple[LogWriter, Repair]:
        ensure_private_dir(paths.directory)
        remove_stale_temps(paths.head)
        fd = open_log_for_append(paths.log)
        try:
            tip, repair = recover(fd, paths, key)
            writer = cls(paths, key, fd, tip)
            if repair.notes:
                writer.append(RECOVERED_KIND, {
                    "removed_bytes": repair.removed_bytes,
                    "rolled_forward_to": repair.rolled_forward_to,
                }, at)
        except BaseException:
            os.close(fd)
            raise
        return writer, repair

    def append(self, kind: str, fields: Mapping[str, FieldValue], at: int) -> AuditEntry:
        """Append an already-checked entry; durable and signed when this returns."""
        fd = self._usable_fd()
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueError("the audit clock must give non-negative integer microseconds")
        tip = self.tip
        entry = seal(self._key, seq=tip.seq + 1, at=at, kind=kind, fields=fields,
                     prev=tip.mac)
        line = entry.encode()
        try:
            write_all(fd, line)
            os.fsync(fd)
            write_head_atomically(self.paths.head,
                                  encode_head(self._key, Head(entry.seq, entry.mac)))
        except OSError as exc:
            self._roll_back(fd, tip)
            raise AuditWriteError(f"append of seq {entry.seq} failed and was rolled back: "
                                  f"{exc.strerror or exc}") from exc
        self.tip = Tip(entry.seq, entry.mac, tip.size + len(line))
        return entry

    def _roll_back(self, fd: int, tip: Tip) -> None:
        """Put file and head back to ``tip``; if even that fails, stop appending."""
        try:
            os.ftruncate(fd, tip.size)
            os.fsync(fd)
            write_head_atomically(self.paths.head,
                                  encode_head(self._key, Head(tip.seq, tip.mac)))
        except OSError as exc:
            self._broken = (f"a failed append could not be rolled back "
                            f"({exc.strerror or exc}); reopen the log to repair it")

    def _usable_fd(self) -> int:
        if self._fd is None:
            raise AuditLogUnavailable("the audit log is closed")
        if self._broken is not None:
            raise AuditLogUnavailable(self._broken)
        return self._fd

    def head_snapshot(self) -> tuple[bytes | None, int]:
        """head.json as it is on disk, with the log size it should describe."""
        return read_head_bytes(self.paths.head), self.tip.size

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
