"""Wall-clock time for everything that waits for a moment named in a database or a row.

The control plane's delivery holds rows until ``deliver_after``, its scheduler fires
tasks at ``next_run_at``, its sweeper measures heartbeat ages, its gateway expires
changes: all in wall-clock microseconds (the wire encoding,
:mod:`ironclaw.contract.clock`). Trio's own clock is monotonic and unrelated, so each
of those actors takes a :class:`WallClock`, the one clock of the house:

* :class:`SystemClock` in production: the real time, and naps of at most
  ``max_nap`` seconds so a wall-clock jump (NTP, suspend) is noticed;
* :class:`TrioClock` in tests: wall time derived from Trio's clock, so pytest-trio's
  ``autojump_clock`` makes a day of schedules run in milliseconds.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ironclaw.contract.clock import now_us

__all__ = ["SystemClock", "TrioClock", "WallClock"]


class WallClock(Protocol):
    def now_us(self) -> int:
        """Wall-clock microseconds since the Unix epoch, UTC."""
        ...

    async def sleep_until(self, at_us: int) -> None:
        """Return once ``now_us() >= at_us`` (at once if it already is)."""
        ...


class SystemClock:
    def __init__(self, max_nap: float = 30.0) -> None:
        if max_nap <= 0:
            raise ValueError("max_nap must be positive")
        self._max_nap = max_nap

    def now_us(self) -> int:
        return now_us()

    async def sleep_until(self, at_us: int) -> None:
        await trio.lowlevel.checkpoint()
        # Polling is the point: the wall clock can jump, and no event tells us so.
        while (delta := at_us - now_us()) > 0:  # noqa: ASYNC110
            await trio.sleep(min(delta / 1e6, self._max_nap))


class TrioClock:
    """Wall time that advances with ``trio.current_time()``; create it inside Trio."""

    def __init__(self, start_us: int) -> None:
        self._offset_us = start_us - round(trio.current_time() * 1e6)

    def now_us(self) -> int:
        return self._offset_us + round(trio.current_time() * 1e6)

    async def sleep_until(self, at_us: int) -> None:
        await trio.lowlevel.checkpoint()
        while self.now_us() < at_us:  # float rounding may fall a microsecond short
            target = (at_us - self._offset_us) / 1e6
            await trio.sleep_until(max(target, trio.current_time() + 1e-6))
