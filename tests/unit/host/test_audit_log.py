"""The Trio ``AuditLog``: tail, export, the ids-and-counts rule, crash repair,
concurrency, permissions and failure rollback, on real files."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.host.audit import (
    MAX_TAIL,
    AuditFieldRejected,
    AuditLog,
    AuditLogCorrupt,
    AuditLogUnavailable,
    AuditPermissionError,
    AuditWriteError,
    open_audit_log,
)
from ironclaw.host.audit import files as audit_files
from ironclaw.host.audit import writer as audit_writer
from tests.support.audit import (
    KEY,
    Clock,
    build_chain,
    canonical_line,
    entry_json,
    file_size,
    paths,
    problems_text,
    read_lines,
    verify,
    write_lines,
)

# --- tail ---------------------------------------------------------------------------


async def test_tail_returns_the_last_entries_in_order(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        for n in range(1, 31):
            await log.append("test.event", n=n)
        tail = await log.tail(5)
        assert [e.seq for e in tail] == [26, 27, 28, 29, 30]
        assert [e.fields["n"] for e in tail] == [26, 27, 28, 29, 30]
        assert all(b.prev == a.mac for a, b in itertools.pairwise(tail))
        assert [e.seq for e in await log.tail(MAX_TAIL)] == list(range(1, 31))
        assert await log.tail(0) == []
        with pytest.raises(ValueError):
            await log.tail(MAX_TAIL + 1)


async def test_tail_of_an_empty_log_is_empty(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        assert await log.tail(10) == []


def test_reading_the_tail_of_a_large_file_reads_only_its_end(tmp_path: Path) -> None:
    build_chain(tmp_path, 20_000)
    log_path = paths(tmp_path).log
    size = file_size(log_path)
    assert size > 4 * 1024 * 1024
    fd = os.open(log_path, os.O_RDONLY)
    try:
        read = audit_files.read_tail_lines(fd, size, 10)
    finally:
        os.close(fd)
    assert [entry_json(line)["seq"] for line in read.lines] == list(range(19_991, 20_001))
    assert read.bytes_read <= audit_files.BLOCK_BYTES
    assert read.bytes_read * 50 < size


async def test_tail_works_when_the_file_is_far_larger_than_what_it_reads(
        tmp_path: Path) -> None:
    # 256 MiB of holes (no newline, no valid entry) in front of a valid tail: any read
    # of the start would either take ages or fail to parse it.
    build_chain(tmp_path, 40)
    lines = read_lines(tmp_path)
    log_path = paths(tmp_path).log
    hole = 256 * 1024 * 1024
    with log_path.open("r+b") as handle:
        handle.truncate(hole)
        handle.seek(hole)
        handle.write(b"\n" + b"".join(lines[-20:]))
    async with open_audit_log(tmp_path, KEY) as log:
        tail = await log.tail(8)
        assert [e.seq for e in tail] == list(range(33, 41))
        assert await log.append("test.after", n=1) == 41
        assert [e.seq for e in await log.tail(2)] == [40, 41]


async def test_tail_refuses_to_show_a_forged_window(tmp_path: Path) -> None:
    build_chain(tmp_path, 10)
    async with open_audit_log(tmp_path, KEY) as log:
        lines = read_lines(tmp_path)
        edited = entry_json(lines[8])
        edited["fields"]["bytes"] = 99  # 63 before: same length, so offsets hold
        lines[8] = canonical_line(edited)
        write_lines(tmp_path, lines)
        with pytest.raises(AuditLogCorrupt, match="seq 9: bad mac"):
            await log.tail(3)
        assert [e.seq for e in await log.tail(1)] == [10]
        write_lines(tmp_path, lines[:-1])  # shorter than the writer knows it to be
        with pytest.raises(AuditLogCorrupt):
            await log.tail(3)


# --- export -------------------------------------------------------------------------


async def _export(log: AuditLog, after_seq: int = 0) -> bytes:
    chunks = [chunk async for chunk in log.export(after_seq)]
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    return b"".join(chunks)


async def test_export_streams_exactly_the_entries_after_a_seq(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        for n in range(1, 51):
            await log.append("test.event", n=n)
        lines = read_lines(tmp_path)
        assert await _export(log) == b"".join(lines)
        for after in (0, 1, 17, 49, 50, 99):
            exported = (await _export(log, after)).splitlines(keepends=True)
            assert exported == lines[after:]
            assert [entry_json(line)["seq"] for line in exported] == list(range(after + 1, 51))
        with pytest.raises(ValueError):
            await _export(log, -1)


async def test_export_of_a_large_log_seeks_instead_of_scanning(tmp_path: Path) -> None:
    build_chain(tmp_path, 20_000, pad=40)
    lines = read_lines(tmp_path)
    async with open_audit_log(tmp_path, KEY) as log:
        assert (await _export(log, 19_990)).splitlines(keepends=True) == lines[19_990:]
        assert (await _export(log, 7_777)).splitlines(keepends=True) == lines[7_777:]
    size = file_size(paths(tmp_path).log)
    fd = os.open(paths(tmp_path).log, os.O_RDONLY)
    try:
        start = audit_files.find_start_after(fd, size, 19_990)
    finally:
        os.close(fd)
    before = sum(len(line) for line in lines[:19_990])
    assert before - audit_files.BLOCK_BYTES <= start <= before


async def test_export_stops_at_the_last_durable_append(tmp_path: Path) -> None:
    build_chain(tmp_path, 2000, pad=40)
    async with open_audit_log(tmp_path, KEY) as log:
        async with contextlib.aclosing(log.export(0)) as stream:
            chunks = [await stream.__anext__()]
            await log.append("test.event", n=99)  # after the export began
            chunks += [chunk async for chunk in stream]
        assert len(chunks) > 2
        assert b"".join(chunks) == b"".join(read_lines(tmp_path)[:2000])


async def test_an_abandoned_export_holds_nothing_open(tmp_path: Path) -> None:
    build_chain(tmp_path, 2000, pad=40)
    fds = len(os.listdir("/proc/self/fd"))
    async with (open_audit_log(tmp_path, KEY) as log,
                contextlib.aclosing(log.export(0)) as stream):
        await stream.__anext__()
        assert len(os.listdir("/proc/self/fd")) == fds + 1  # only the writer's


# --- the ids-and-counts rule --------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("fields", [
    {"text": "x" * 257},
    {"text": SECRET + "\n" + "hello"},
    {"payload": {"token": SECRET}},
    {"items": [SECRET]},
    {"raw": SECRET.encode()},
    {"ratio": 0.5},
    {"count": 2**63},
    {"name": SECRET + "\u202e"},
    {"n" + "_" * k: k for k in range(33)},
], ids=["long-str", "control-char", "dict", "list", "bytes", "float", "huge-int", "bidi",
        "too-many"])
async def test_content_like_fields_are_refused_and_nothing_is_appended(
        tmp_path: Path, fields: dict[str, Any]) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        with pytest.raises(AuditFieldRejected) as caught:
            await log.append("message.received", **fields)
        assert SECRET not in str(caught.value)
        assert log.last_seq == 0 and file_size(paths(tmp_path).log) == 0


@pytest.mark.parametrize("kind", ["", "single", "Upper.case", "a..b", "a.b-c", "a." + "b" * 64])
async def test_bad_kinds_are_refused(tmp_path: Path, kind: str) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        with pytest.raises(AuditFieldRejected, match="audit kind"):
            await log.append(kind, n=1)


async def test_bad_field_names_are_refused_without_being_echoed(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        for name in ("Session", "x" * 41, "with space", SECRET, "n1"):
            with pytest.raises(AuditFieldRejected) as caught:
                await log.append("a.b", **{name: 1})
            assert name not in str(caught.value)
        # The limits themselves are allowed; "kind" is an ordinary field name.
        fields: dict[str, Any] = {"_" * n: "y" * 256 for n in range(1, 32)}
        seq = await log.append("a.b", kind="x", **fields)
        assert seq == 1 and verify(tmp_path).ok


# --- crash repair -------------------------------------------------------------------


@pytest.mark.parametrize("torn", [b'{"at":17500', b"\x00" * 300, b'{"garbage"}\n', b"\n"],
                         ids=["prefix", "zero-fill", "unparsable-line", "empty-line"])
async def test_a_torn_last_line_is_repaired_on_open_and_reported(
        tmp_path: Path, torn: bytes) -> None:
    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        for n in range(3):
            await log.append("test.event", n=n)
    with paths(tmp_path).log.open("ab") as handle:
        handle.write(torn)
    assert not verify(tmp_path).ok

    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        assert len(log.recovered) == 1 and "removed" in log.recovered[0]
        assert f"{len(torn)} bytes" in log.recovered[0]
        recorded = (await log.tail(1))[0]
        assert recorded.seq == 4 and recorded.kind == "audit.recovered"
        assert recorded.fields == {"removed_bytes": len(torn), "rolled_forward_to": None}
        assert await log.append("test.event", n=9) == 5
        assert (await log.verify()).ok
    async with open_audit_log(tmp_path, KEY) as log:
        assert log.recovered == ()


async def test_a_crash_before_the_head_update_rolls_the_head_forward(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        await log.append("test.event", n=1)
        old_head = paths(tmp_path).head.read_bytes()
        await log.append("test.event", n=2)
    paths(tmp_path).head.write_bytes(old_head)  # as if the crash hit before the rename
    assert "past the signed head at seq 1" in problems_text(verify(tmp_path))

    async with open_audit_log(tmp_path, KEY, clock=Clock()) as log:
        assert log.recovered == ("rolled the signed head forward from seq 1 to seq 2 "
                                 "(crash between append and head update)",)
        assert [(e.seq, e.kind) for e in await log.tail(2)] == [
            (2, "test.event"), (3, "audit.recovered")]
    assert verify(tmp_path).ok


async def test_a_head_two_behind_is_not_a_crash_and_is_refused(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        await log.append("test.event", n=1)
        old_head = paths(tmp_path).head.read_bytes()
        await log.append("test.event", n=2)
        await log.append("test.event", n=3)
    paths(tmp_path).head.write_bytes(old_head)
    with pytest.raises(AuditLogCorrupt, match="ends at seq 3 but the signed head is at seq 1"):
        async with open_audit_log(tmp_path, KEY):
            pass


async def test_a_log_without_its_head_is_refused(tmp_path: Path) -> None:
    build_chain(tmp_path, 2)
    paths(tmp_path).head.unlink()
    with pytest.raises(AuditLogCorrupt, match=r"head\.json is missing"):
        async with open_audit_log(tmp_path, KEY):
            pass


async def test_a_failed_append_is_rolled_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = audit_files.write_head_atomically
    async with open_audit_log(tmp_path, KEY) as log:
        await log.append("test.event", n=1)
        size = file_size(paths(tmp_path).log)
        failures = iter([OSError(errno.ENOSPC, "No space left on device")])

        def failing(path: Path, data: bytes) -> None:
            error = next(failures, None)
            if error is not None:
                raise error
            real(path, data)

        monkeypatch.setattr(audit_writer, "write_head_atomically", failing)
        with pytest.raises(AuditWriteError, match="seq 2 failed and was rolled back"):
            await log.append("test.event", n=2)
        assert file_size(paths(tmp_path).log) == size and log.last_seq == 1
        assert await log.append("test.event", n=3) == 2
    assert verify(tmp_path).ok


# --- concurrency, lifecycle, permissions --------------------------------------------


async def test_concurrent_appends_get_every_seq_once_on_a_valid_chain(tmp_path: Path) -> None:
    seqs: list[int] = []

    async def writer(log: AuditLog, worker: int) -> None:
        for n in range(10):
            seqs.append(await log.append("test.event", worker=worker, n=n))

    async with open_audit_log(tmp_path, KEY) as log, trio.open_nursery() as nursery:
        for worker in range(20):
            nursery.start_soon(writer, log, worker)
    assert sorted(seqs) == list(range(1, 201))
    report = verify(tmp_path)
    assert report.ok and report.entries == 200


async def test_the_actor_form_runs_under_a_nursery(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        log = await nursery.start(AuditLog(tmp_path, KEY).run)
        assert isinstance(log, AuditLog)
        assert await log.append("sandbox.killed", session_id="ses_1") == 1
        nursery.cancel_scope.cancel()
    with pytest.raises(AuditLogUnavailable):
        await log.append("sandbox.killed", session_id="ses_1")
    assert verify(tmp_path).ok


async def test_verify_sees_tampering_done_while_the_log_is_open(tmp_path: Path) -> None:
    async with open_audit_log(tmp_path, KEY) as log:
        for n in range(6):
            await log.append("test.event", n=n)
        assert (await log.verify()).ok
        lines = read_lines(tmp_path)
        del lines[2]
        write_lines(tmp_path, lines)
        report = await log.verify()
        assert not report.ok
        assert "seq 4: seq gap, expected seq 3" in report.problems
        assert any("shorter than the last durable append" in p for p in report.problems)


@pytest.mark.parametrize("target", ["directory", "log"])
async def test_files_others_can_reach_are_refused(tmp_path: Path, target: str) -> None:
    build_chain(tmp_path, 1)
    where = paths(tmp_path)
    (where.directory if target == "directory" else where.log).chmod(0o755)
    with pytest.raises(AuditPermissionError, match="must be"):
        async with open_audit_log(tmp_path, KEY):
            pass


async def test_a_symlinked_log_is_refused(tmp_path: Path) -> None:
    build_chain(tmp_path, 1)
    where = paths(tmp_path)
    real = tmp_path / "elsewhere.log"
    where.log.rename(real)
    where.log.symlink_to(real)
    with pytest.raises(AuditPermissionError):
        async with open_audit_log(tmp_path, KEY):
            pass


def test_a_key_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        AuditLog(tmp_path, b"short")
