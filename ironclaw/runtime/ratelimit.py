"""Token buckets: one bucket, and one bucket per key.

A bucket banks at most ``burst`` tokens and refills at ``rate`` per second; each
request spends one. Time is Trio's clock by default, so tests can autojump it. One
implementation serves the model proxy and egress broker (a bucket per session
socket), the API (a bucket per principal or client address), chat commands (per
sender, and overall) and the IRC link's flood pacing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import trio

__all__ = ["KeyedRateLimiter", "TokenBucket"]

MAX_KEYS = 4096


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; one token per request."""

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

    async def acquire(self) -> None:
        """Take a token, sleeping until one is available (pacing rather than refusing)."""
        while (wait := self.try_acquire()) > 0:  # noqa: ASYNC110 (time, not an event)
            await trio.sleep(wait)

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """``Retry-After`` wants whole seconds; round up so a client that obeys succeeds."""
        return str(max(1, math.ceil(wait)))


class KeyedRateLimiter:
    """A :class:`TokenBucket` per key, for the ``max_keys`` most recently seen keys."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 if allowed, else seconds until one is due."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst)
            while len(self._buckets) > self._max_keys:
                # The least recently seen key goes; it starts full when it comes back,
                # which is no worse than a client with a fresh address.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_acquire()
