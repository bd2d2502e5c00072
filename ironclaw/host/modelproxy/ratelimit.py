"""A token bucket per session.

The bucket belongs to the session's socket, not to anything the sandbox sends, so a
hostile sandbox cannot rotate a key to get a fresh bucket, and one session's flood never
spends another's allowance (the anchor keyed its bucket on a header nobody sent, which
made it one global bucket).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; one token per request.

    ``clock`` defaults to Trio's clock, so tests can drive it with ``autojump_clock`` or
    a plain function.
    """

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = trio.current_time) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token: 0.0 on success, else the seconds until one is available."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """``Retry-After`` wants whole seconds; round up so a client that obeys succeeds."""
        return str(max(1, math.ceil(wait)))
