"""Shared helpers for the audit log tests (no tests).

The test modules import this one by its basename (pytest's default ``prepend`` import
mode puts this directory on ``sys.path``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ironclaw.host.audit import GENESIS_MAC, AuditPaths, VerifyReport, verify_file
from ironclaw.host.audit.entry import Head, encode_head, seal
from ironclaw.host.keys import Purpose, derive_subkey

KEY = derive_subkey(bytes(range(32)), Purpose.AUDIT_CHAIN)
OTHER_KEY = derive_subkey(bytes(range(1, 33)), Purpose.AUDIT_CHAIN)
T0 = 1_750_000_000_000_000


class Clock:
    """A deterministic microsecond clock: each reading is one ms after the last."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def paths(state: Path) -> AuditPaths:
    return AuditPaths.in_state_dir(state)


def build_chain(state: Path, count: int, *, key: bytes = KEY, pad: int = 0) -> None:
    """Write a valid log of ``count`` entries and its head directly (fast, no fsyncs),
    exactly as the writer would have. ``pad`` adds a filler field to grow each line."""
    where = paths(state)
    where.directory.mkdir(mode=0o700, exist_ok=True)
    where.directory.chmod(0o700)
    prev = GENESIS_MAC
    seq = 0
    with where.log.open("wb") as handle:
        for seq in range(1, count + 1):
            fields: dict[str, Any] = {"session_id": f"ses_{seq:08x}", "bytes": seq * 7}
            if pad:
                fields["filler"] = "x" * pad
            entry = seal(key, seq=seq, at=T0 + seq, kind="test.event", fields=fields,
                         prev=prev)
            handle.write(entry.encode())
            prev = entry.mac
    where.log.chmod(0o600)
    where.head.write_bytes(encode_head(key, Head(seq, prev)))
    where.head.chmod(0o600)


def read_lines(state: Path) -> list[bytes]:
    return paths(state).log.read_bytes().splitlines(keepends=True)


def write_lines(state: Path, lines: list[bytes]) -> None:
    paths(state).log.write_bytes(b"".join(lines))


def entry_json(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def canonical_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode() + b"\n"


def verify(state: Path, key: bytes = KEY) -> VerifyReport:
    return verify_file(paths(state).log, key)


def problems_text(report: VerifyReport) -> str:
    return "\n".join(report.problems)


def file_size(path: Path) -> int:
    return os.stat(path).st_size
