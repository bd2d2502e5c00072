"""Checking a whole log in one streaming pass, with or without Trio.

``ChainVerifier`` is fed the file in chunks of any size and holds at most one line
plus a bounded list of problems, so a log of any length verifies in bounded memory.
After a problem it re-synchronises on the entry it just read, so one edited entry is
reported once or twice, not as the ruin of everything after it.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import attrs

from .entry import (
    GENESIS_MAC,
    KEY_BYTES,
    MAX_LINE_BYTES,
    HeadInvalid,
    UnparsableEntry,
    decode_head,
    decode_line,
    mac_ok,
)
from .files import BLOCK_BYTES, read_head_bytes

MAX_PROBLEMS = 100


@attrs.frozen
class VerifyReport:
    ok: bool
    entries: int  # complete lines read, well-formed or not
    problems: tuple[str, ...]
    last_seq: int  # seq of the last well-formed entry (0 for an empty log)


class ChainVerifier:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the audit key is exactly {KEY_BYTES} bytes")
        self._key = key
        self._carry = b""
        self._skipping = False  # inside an over-long line: drop bytes until its newline
        self._resync = False  # the previous line was unreadable: do not judge the link
        self._lines = 0
        self._last_seq = 0
        self._last_mac = GENESIS_MAC
        self._problems: list[str] = []
        self._dropped = 0

    def add_problem(self, text: str) -> None:
        """Record a problem found outside the stream itself (e.g. by its reader)."""
        self._problem(text)

    def _problem(self, text: str) -> None:
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(text)
        else:
            self._dropped += 1

    def feed(self, data: bytes) -> None:
        buffer = self._carry + data if self._carry else data
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            line, start = buffer[start:newline], newline + 1
            if self._skipping:
                self._skipping = False
                continue
            self._line(line)
        rest = buffer[start:]
        if len(rest) > MAX_LINE_BYTES and not self._skipping:
            self._lines += 1
            self._unreadable(f"longer than {MAX_LINE_BYTES} bytes")
            self._skipping = True
        self._carry = b"" if self._skipping else rest

    def _unreadable(self, reason: str) -> None:
        self._problem(f"line {self._lines} (after seq {self._last_seq}): unparsable: {reason}")
        self._resync = True

    def _line(self, line: bytes) -> None:
        self._lines += 1
        if len(line) > MAX_LINE_BYTES:
            self._unreadable(f"longer than {MAX_LINE_BYTES} bytes")
            return
        try:
            entry = decode_line(line)
        except UnparsableEntry as exc:
            self._unreadable(exc.reason)
            return
        if not mac_ok(self._key, entry):
            self._problem(f"seq {entry.seq}: bad mac (content altered, or the wrong key)")
        if not self._resync:
            expected = self._last_seq + 1
            if entry.seq < expected:
                self._problem(f"seq {entry.seq}: reordered or repeated "
                              f"(after seq {self._last_seq})")
            elif entry.seq > expected:
                self._problem(f"seq {entry.seq}: seq gap, expected seq {expected}")
            if not hmac.compare_digest(entry.prev, self._last_mac):
                self._problem(f"seq {entry.seq}: broken prev link "
                              f"(does not chain to the entry before it)")
        self._resync = False
        self._last_seq, self._last_mac = entry.seq, entry.mac

    def finish(self, head: bytes | None) -> VerifyReport:
        """End of the stream. ``head`` is head.json's bytes, None if there is none."""
        if self._carry or self._skipping:
            self._problem(f"truncated: a torn last line after seq {self._last_seq} "
                          f"({len(self._carry)} bytes without a newline)")
        self._check_head(head)
        problems = list(self._problems)
        if self._dropped:
            problems.append(f"... and {self._dropped} more problems")
        return VerifyReport(ok=not problems, entries=self._lines, problems=tuple(problems),
                            last_seq=self._last_seq)

    def _check_head(self, data: bytes | None) -> None:
        if data is None:
            self._problem("head.json is missing: a truncated tail cannot be ruled out")
            return
        try:
            head = decode_head(data, self._key)
        except HeadInvalid as exc:
            self._problem(f"head mismatch: {exc.reason}")
            return
        if head.seq > self._last_seq:
            self._problem(f"truncated tail: the signed head is at seq {head.seq} but the "
                          f"log ends at seq {self._last_seq}")
        elif head.seq < self._last_seq:
            self._problem(f"head mismatch: the log runs to seq {self._last_seq}, past the "
                          f"signed head at seq {head.seq}")
        elif not hmac.compare_digest(head.mac, self._last_mac):
            self._problem(f"head mismatch: seq {head.seq} is not the entry the head signed")


def verify_file(path: Path, key: bytes, *, head_path: Path | None = None) -> VerifyReport:
    """Verify ``audit.log`` at ``path`` against its ``head.json`` (by default next to it).

    Synchronous and Trio-free, for ``ironctl audit verify`` or a cron job: one pass,
    bounded memory. A missing log reads as empty, so a deleted log with a head left
    behind is reported as a truncated tail.
    """
    verifier = ChainVerifier(key)
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    else:
        with os.fdopen(fd, "rb") as handle:
            while chunk := handle.read(BLOCK_BYTES * 16):
                verifier.feed(chunk)
    return verifier.finish(read_head_bytes(head_path or path.with_name("head.json")))
