"""The hardened reader of files a sandbox can write: FIFOs, symlinks, devices, hard
links and oversized files are refused at once, without blocking and without reading."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest
import trio

from ironclaw.contract.layout import read_heartbeat, write_heartbeat
from ironclaw.contract.queue import QueueFileUnsafe, QueueTooLarge
from ironclaw.contract.queue.files import copy_snapshot, fence_path_for
from ironclaw.contract.untrusted_files import (
    UnsafeFile,
    UntrustedFileTooLarge,
    read_untrusted,
    run_untrusted,
)

# A fence at counter 0 (even: stable), with its inverted copy.
EVEN_FENCE = (0).to_bytes(8, "little") + ((1 << 64) - 1).to_bytes(8, "little")


def test_a_plain_small_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    path.write_bytes(b"12345")
    assert read_untrusted(path, max_bytes=64) == b"12345"


def test_a_fifo_with_no_writer_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    os.mkfifo(path)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read_untrusted(path, max_bytes=64)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # a plain open() stays here for ever; unblock it and fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], UnsafeFile)


def test_a_symlink_is_refused_even_to_a_harmless_file(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"1")
    (tmp_path / "beat").symlink_to(target)
    with pytest.raises(UnsafeFile):
        read_untrusted(tmp_path / "beat", max_bytes=64)


def test_a_hard_link_to_another_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "host-private"
    target.write_bytes(b"secret")
    os.link(target, tmp_path / "beat")
    with pytest.raises(UnsafeFile):
        read_untrusted(tmp_path / "beat", max_bytes=64)


def test_a_device_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")
    with pytest.raises(UnsafeFile):
        read_untrusted(path, max_bytes=64)


def test_a_directory_and_a_socket_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(UnsafeFile):
        read_untrusted(tmp_path / "dir", max_bytes=64)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(UnsafeFile):
            read_untrusted(tmp_path / "sock", max_bytes=64)


def test_a_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    path.write_bytes(b"9" * 65)
    with pytest.raises(UntrustedFileTooLarge):
        read_untrusted(path, max_bytes=64)


def test_heartbeat_reads_none_for_anything_but_a_beat(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    write_heartbeat(path, 1_800_000_000_000_000)
    assert read_heartbeat(path) == 1_800_000_000_000_000
    path.unlink()
    os.mkfifo(path)
    assert read_heartbeat(path) is None
    path.unlink()
    path.symlink_to("/dev/zero")
    assert read_heartbeat(path) is None


@pytest.mark.parametrize("victim", ["db", "fence"])
@pytest.mark.parametrize("plant", ["fifo", "symlink", "hardlink"])
def test_snapshot_copy_refuses_planted_files(tmp_path: Path, victim: str,
                                             plant: str) -> None:
    db = tmp_path / "outbound.db"
    db.write_bytes(b"\0" * 4096)
    fence_path_for(db).write_bytes(EVEN_FENCE)
    path = db if victim == "db" else fence_path_for(db)
    path.unlink()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 8192)
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "symlink":
        path.symlink_to(big)
    else:
        os.link(big, path)
    with pytest.raises(QueueFileUnsafe), open(tmp_path / "scratch", "wb") as scratch:
        copy_snapshot(db, scratch.fileno(), budget_s=1.0)


def test_snapshot_copy_refuses_an_oversized_file_by_its_size(tmp_path: Path) -> None:
    db = tmp_path / "outbound.db"
    with open(db, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: reading it would cost a gigabyte
    fence_path_for(db).write_bytes(EVEN_FENCE)
    with pytest.raises(QueueTooLarge), open(tmp_path / "scratch", "wb") as scratch:
        copy_snapshot(db, scratch.fileno(), max_bytes=1 << 20)


async def test_run_untrusted_gives_up_at_its_deadline_and_frees_the_caller() -> None:
    release = threading.Event()
    limiter = trio.CapacityLimiter(1)
    with pytest.raises(trio.TooSlowError):
        await run_untrusted(lambda: release.wait(30), limiter=limiter, deadline_s=0.2)
    # The abandoned thread still holds this caller's limiter, and only it: Trio's
    # shared limiter is free for everyone else.
    assert limiter.borrowed_tokens == 1
    assert trio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
    release.set()
    with trio.fail_after(10):
        async with limiter:  # handed back once the abandoned thread ends
            pass
