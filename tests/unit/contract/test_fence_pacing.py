"""Writer pacing across clock domains (RFC-0003): an end time from another writer's
monotonic clock (an earlier gVisor sandbox, another runtime) never stalls a commit
for longer than one pacing gap."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from ironclaw.contract.queue.fence import WriterFence, pacing_gap, read_fence


def test_an_end_time_from_a_clock_far_ahead_costs_at_most_one_gap(tmp_path: Path) -> None:
    fence_path = tmp_path / "outbound.db.fence"
    hours_ahead = time.monotonic_ns() + 3 * 3600 * 10**9
    fence_path.write_bytes(struct.pack("<QQQ", 10, 10 ^ ((1 << 64) - 1), hours_ahead))
    fence = WriterFence(fence_path, durable=False)
    try:
        started = time.monotonic()
        with fence.writing():
            pass
        waited = time.monotonic() - started
    finally:
        fence.close()
    # One gap is half a millisecond for an empty file; allow a generous margin for a
    # loaded machine, but nowhere near the three hours the end time asked for.
    assert waited < pacing_gap(0) + 5.0
    assert read_fence(fence_path) == 12  # the commit went through: odd, then even


def test_back_to_back_commits_are_still_paced(tmp_path: Path) -> None:
    fence = WriterFence(tmp_path / "f", durable=False)
    try:
        with fence.writing():
            pass
        size = 40 * 1024 * 1024  # a 40 MiB file: a gap of about 0.1 s
        started = time.monotonic()
        with fence.writing(lambda: size):
            pass
        assert time.monotonic() - started >= pacing_gap(size) * 0.9
    finally:
        fence.close()
