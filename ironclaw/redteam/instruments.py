"""What the second family measures on the host while a probe runs.

* the bystander's reply latency: a session nobody attacks is sent a message, again and
  again, and each reply is timed through the whole path (local channel, router,
  inbound queue, its sandbox, outbound queue, delivery);
* the event loop's lag, from the control plane's own :class:`LoopLagMonitor`;
* the host's resident memory, sampled by a thread (not a task: a stalled loop must
  not stop the sampling), since the control plane runs in this process;
* a FIFO rescuer, a thread too: a FIFO caught a reader in a blocking ``open`` is
  opened for writing once the probe's hold is over, so that a host without the
  defence stalls for the hold, and the run can go on, rather than hang for good.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.host.app import ControlPlaneHandles

__all__ = ["Window", "WindowFigures", "measure_window", "percentile", "rss_bytes"]

PING_TIMEOUT_S = 60.0
RSS_SAMPLE_S = 0.01
RESCUE_POLL_S = 0.02
RESCUE_HOLD_S = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (as bench/ reports); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * _PAGE


@attrs.frozen
class WindowFigures:
    replies_s: tuple[float, ...]  # the bystander's reply latencies
    unanswered: int  # pings that got no reply within PING_TIMEOUT_S
    loop_lag_s: tuple[float, ...]
    rss_start: int
    rss_peak: int

    @property
    def reply_p50_s(self) -> float:
        return percentile(self.replies_s, 50)

    @property
    def reply_p99_s(self) -> float:
        return percentile(self.replies_s, 99)

    @property
    def loop_lag_p99_s(self) -> float:
        return percentile(self.loop_lag_s, 99)

    @property
    def loop_lag_max_s(self) -> float:
        return max(self.loop_lag_s, default=0.0)

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_start

    def to_json(self) -> dict[str, Any]:
        return {"bystander_replies": len(self.replies_s), "unanswered": self.unanswered,
                "reply_p50_ms": round(self.reply_p50_s * 1000, 1),
                "reply_p99_ms": round(self.reply_p99_s * 1000, 1),
                "loop_lag_p99_ms": round(self.loop_lag_p99_s * 1000, 1),
                "loop_lag_max_ms": round(self.loop_lag_max_s * 1000, 1),
                "rss_start_mib": round(self.rss_start / 2**20, 1),
                "rss_peak_mib": round(self.rss_peak / 2**20, 1),
                "rss_growth_mib": round(self.rss_growth / 2**20, 1),
                "replies_ms": [round(r * 1000, 1) for r in self.replies_s]}


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="redteam-rss", daemon=True)
        self.start_rss = rss_bytes()
        self.peak = self.start_rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, rss_bytes())


class _FifoRescuer(threading.Thread):
    """Release readers of any FIFO in ``directory`` once it has sat there ``hold_s``:
    open it read-write (which never blocks, and completes every reader's blocked
    open), keep that open briefly, then close it (which ends every reader's read)."""

    def __init__(self, directory: Path, hold_s: float) -> None:
        super().__init__(name="redteam-fifo-rescuer", daemon=True)
        self.directory = directory
        self.hold_s = hold_s
        self.stop = threading.Event()
        self.released = 0

    def run(self) -> None:
        first_seen: dict[str, float] = {}
        while not self.stop.wait(RESCUE_POLL_S):
            held = []
            with contextlib.suppress(OSError):
                for entry in os.scandir(self.directory):
                    with contextlib.suppress(OSError):
                        if not stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                            continue
                        seen = first_seen.setdefault(entry.path, time.monotonic())
                        if time.monotonic() - seen >= self.hold_s:
                            held.append(os.open(entry.path, os.O_RDWR | os.O_NONBLOCK))
                            self.released += 1
            if held:
                time.sleep(RESCUE_HOLD_S)
                for fd in held:
                    os.close(fd)


@attrs.define
class Window:
    """Filled in by :func:`measure_window` when the block ends."""

    figures: WindowFigures | None = None
    fifo_releases: int = 0


@contextlib.asynccontextmanager
async def measure_window(plane: ControlPlaneHandles, bystander: str, outbound_dir: Path,
                         hold_s: float) -> AsyncIterator[Window]:
    """Ping the bystander and sample the host for as long as the block runs."""
    window = Window()
    replies: list[float] = []
    unanswered = 0
    sampler = _RssSampler()
    rescuer = _FifoRescuer(outbound_dir, hold_s)

    async def ping_forever() -> None:
        nonlocal unanswered
        while True:
            # A nonce, so that a late reply to an earlier window's ping is not taken
            # for this one's.
            text = f"ping {secrets.token_hex(4)}"
            mark = plane.local.cursor(bystander)
            started = time.monotonic()
            await plane.local.post(bystander, "operator", text)
            with trio.move_on_after(PING_TIMEOUT_S) as waited:
                while True:
                    entry = await plane.local.wait_for_reply(bystander, after_index=mark)
                    if entry.text == f"echo: {text}":
                        break
                    mark = entry.index
            if waited.cancelled_caught:
                unanswered += 1
            else:
                replies.append(time.monotonic() - started)

    sampler.start()
    rescuer.start()
    try:
        with plane.loop_lag.recording() as lags:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping_forever)
                yield window
                nursery.cancel_scope.cancel()
    finally:
        sampler.stop.set()
        rescuer.stop.set()
        await trio.to_thread.run_sync(sampler.join)
        await trio.to_thread.run_sync(rescuer.join)
    window.figures = WindowFigures(tuple(replies), unanswered, tuple(lags),
                                   sampler.start_rss, sampler.peak)
    window.fifo_releases = rescuer.released
