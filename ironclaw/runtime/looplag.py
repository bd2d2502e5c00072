"""The loop-lag instrument: how long the Trio event loop stalls.

One task sleeps a fixed short interval, again and again, and records how much later
than asked it woke. Every task shares the one Trio thread, so anything that holds
that thread (a blocking ``open`` of a FIFO, a long computation, a synchronous read
of a large file) delays this wake-up by as long as it holds it: a stall of S seconds
is seen as a lag of about S. The instrument cannot tell which task stalled, only
that the loop did and for how long, which is the promise to keep ("the control
plane's event loop never waits on anything a sandbox controls").

It keeps, from start: the largest lag, and cumulative counts per histogram bucket
(Prometheus semantics, so ``/metrics`` can export them without a second copy).
Observers get every sample as it is taken; a :meth:`LoopLagMonitor.recording`
collects the samples of one window (the red-team harness measures each probe so).
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable, Iterator

import trio

__all__ = ["LAG_BUCKETS_S", "LoopLagMonitor", "LoopLagSnapshot"]

# Upper bounds, in seconds, of the lag histogram's buckets (the last is +Inf).
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, math.inf)
DEFAULT_INTERVAL_S = 0.02


class LoopLagSnapshot:
    """Cumulative figures at one moment: bucket counts (cumulative, Prometheus-style),
    their sum and count, and the largest lag seen."""

    __slots__ = ("buckets", "count", "max_s", "sum_s")

    def __init__(self, buckets: tuple[tuple[float, int], ...], count: int, sum_s: float,
                 max_s: float) -> None:
        self.buckets = buckets
        self.count = count
        self.sum_s = sum_s
        self.max_s = max_s


class LoopLagMonitor:
    """Sleep ``interval_s``, measure the overshoot, repeat; until cancelled."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("the interval must be positive")
        self.interval_s = interval_s
        self.max_s = 0.0
        self._counts = [0] * len(LAG_BUCKETS_S)
        self._sum_s = 0.0
        self._count = 0
        self._observers: list[Callable[[float], None]] = []
        self._recordings: list[list[float]] = []

    def add_observer(self, observer: Callable[[float], None]) -> None:
        """``observer(lag_s)`` is called on the loop for every sample; keep it cheap."""
        self._observers.append(observer)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[float]]:
        """Collect every sample taken while the block runs into the yielded list."""
        samples: list[float] = []
        self._recordings.append(samples)
        try:
            yield samples
        finally:
            self._recordings.remove(samples)

    def record(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.max_s = max(self.max_s, lag_s)
        self._counts[bisect.bisect_left(LAG_BUCKETS_S, lag_s)] += 1
        self._sum_s += lag_s
        self._count += 1
        for samples in self._recordings:
            samples.append(lag_s)
        for observer in self._observers:
            observer(lag_s)

    def snapshot(self) -> LoopLagSnapshot:
        running, cumulative = 0, []
        for bound, count in zip(LAG_BUCKETS_S, self._counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return LoopLagSnapshot(tuple(cumulative), self._count, self._sum_s, self.max_s)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            # The deadline, not "now + interval" after waking: a late wake is measured
            # against when it was due.
            due = trio.current_time() + self.interval_s
            await trio.sleep_until(due)
            self.record(trio.current_time() - due)
