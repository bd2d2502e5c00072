"""Blocking file primitives of the audit log. Everything here runs on a worker thread.

Reads never take the whole file: the tail is read backwards in blocks, an export finds
its start by bisecting byte offsets (the file is sorted by seq) and then reads forward
in blocks, and every read stops at an ``end`` the writer has already made durable, so a
reader never sees half an append.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import attrs

from ironclaw.host import private_files

from .entry import MAX_HEAD_BYTES, MAX_LINE_BYTES
from .errors import AuditLogCorrupt, AuditPermissionError

BLOCK_BYTES = 64 * 1024
_TEMP_MARKER = ".tmp-"
# Sorted keys put "seq" last, so a canonical line ends with it: a cheap way to find a
# line's seq without parsing it. Good enough to seek with; never used to trust a line.
_SEQ_AT_END = re.compile(rb',"seq":([0-9]{1,19})\}')


@attrs.frozen
class AuditPaths:
    directory: Path
    log: Path
    head: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> AuditPaths:
        directory = Path(state_dir) / "audit"
        return cls(directory, directory / "audit.log", directory / "head.json")


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 if missing; refuse one that is not ours alone, or
    whose mode is anything but exactly 0700."""
    private_files.ensure_private_dir(directory, exact_mode=0o700, error=AuditPermissionError)


def _check_private(path: Path, info: os.stat_result, is_type: Callable[[int], bool],
                   mode: int) -> None:
    if not is_type(info.st_mode):
        raise AuditPermissionError(f"{path} is not a {'directory' if mode == 0o700 else 'file'}")
    if info.st_uid != os.geteuid():
        raise AuditPermissionError(f"{path} is owned by uid {info.st_uid}, not us")
    if stat.S_IMODE(info.st_mode) != mode:
        raise AuditPermissionError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):o}; it must be {mode:o}")


def open_log_for_append(path: Path) -> int:
    """The writer's descriptor: created 0600 if missing, refused if not ours alone."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as exc:
            raise AuditPermissionError(f"cannot open {path} safely: {exc.strerror}") from None
    else:
        os.fchmod(fd, 0o600)
        private_files.fsync_dir(path.parent)
    try:
        _check_private(path, os.fstat(fd), stat.S_ISREG, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            raise AuditLogCorrupt("audit.log shrank while being read")
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_head_bytes(path: Path) -> bytes | None:
    """head.json's bytes, or None if there is none. A head too big to be one is kept
    whole enough (one byte over) for the parser to refuse it."""
    try:
        fd = read_fd(path)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AuditLogCorrupt(f"{path} is not a regular file")
        return os.read(fd, MAX_HEAD_BYTES + 1)
    finally:
        os.close(fd)


def write_head_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over, fsync the directory."""
    private_files.atomic_replace(path, data, mode=0o600)


def remove_stale_temps(path: Path) -> None:
    private_files.remove_stale_temps(path.parent, path.name)


@attrs.frozen
class TailRead:
    lines: tuple[bytes, ...]  # oldest first, newlines stripped
    bytes_read: int


def read_tail_lines(fd: int, end: int, limit: int) -> TailRead:
    """The last ``limit`` lines before ``end``, which must be 0 or just after a newline.
    Reads backwards in blocks; memory is bounded by ``limit`` lines."""
    newest_first: list[bytes] = []
    data = b""  # bytes [pos, cut): cut is always just after a newline
    pos = end
    bytes_read = 0
    while len(newest_first) < limit:
        split = data.rfind(b"\n", 0, len(data) - 1) if data else -1
        if split >= 0:
            newest_first.append(data[split + 1:-1])
            data = data[:split + 1]
            continue
        if pos == 0:
            if data:
                newest_first.append(data[:-1])
            break
        if len(data) > MAX_LINE_BYTES + 1:
            raise AuditLogCorrupt(f"a line ending at byte {pos + len(data)} is longer "
                                  f"than {MAX_LINE_BYTES} bytes")
        size = min(BLOCK_BYTES, pos)
        pos -= size
        data = pread_exact(fd, size, pos) + data
        bytes_read += size
    newest_first.reverse()
    return TailRead(tuple(newest_first), bytes_read)


def last_line_boundary(fd: int, end: int) -> int:
    """The offset just after the last newline before ``end`` (0 if none), searched at
    most one line's length back."""
    low = max(0, end - MAX_LINE_BYTES - 1)
    data = pread_exact(fd, end - low, low)
    split = data.rfind(b"\n")
    if split >= 0:
        return low + split + 1
    if low == 0:
        return 0
    raise AuditLogCorrupt(f"the last {end - low} bytes of audit.log hold no newline")


def seq_of(line: bytes) -> int | None:
    """The seq a canonical line names, read from its end without parsing the rest."""
    match = _SEQ_AT_END.search(line, max(0, len(line) - 32))
    if match is None or match.end() != len(line):
        return None
    return int(match.group(1))


def read_lines(fd: int, offset: int, end: int) -> tuple[bytes, int]:
    """Whole lines from ``offset`` (a line start) up to about a block: (bytes, next offset)."""
    if offset >= end:
        return b"", offset
    size = min(BLOCK_BYTES, end - offset)
    data = pread_exact(fd, size, offset)
    cut = data.rfind(b"\n") + 1
    if cut == 0 and offset + size < end:
        size = min(MAX_LINE_BYTES + 1, end - offset)
        data = pread_exact(fd, size, offset)
        cut = data.rfind(b"\n") + 1
    if cut == 0:
        raise AuditLogCorrupt(f"no line ends within {size} bytes of offset {offset}")
    return data[:cut], offset + cut


def find_start_after(fd: int, end: int, after_seq: int) -> int:
    """A line start at or before the first line whose seq exceeds ``after_seq``.

    Bisects byte offsets, reading one line per step, so a SIEM polling with a recent
    ``after_seq`` costs O(log size), never a scan of the whole file. A line that does
    not name its seq stops the bisection early; the forward scan then covers it.
    """
    low, high = 0, end
    while high - low > BLOCK_BYTES:
        middle = (low + high) // 2
        window = pread_exact(fd, min(MAX_LINE_BYTES * 2 + 2, high - middle + 1), middle - 1)
        first = window.find(b"\n")
        if first < 0:
            break
        start = middle + first
        stop = window.find(b"\n", first + 1)
        if start >= high or stop < 0:
            break
        seq = seq_of(window[first + 1:stop])
        if seq is None:
            break
        if seq <= after_seq:
            low = middle + stop
        else:
            high = start
    return low
