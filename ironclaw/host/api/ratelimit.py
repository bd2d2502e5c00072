"""Token buckets, one per key (a principal's name, or a client address for requests
that failed to authenticate). Time is Trio's clock, so tests can autojump it."""

from __future__ import annotations

from collections import OrderedDict

import attrs
import trio

MAX_KEYS = 4096


@attrs.define
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 if allowed, else seconds until one is due."""
        now = trio.current_time()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
            while len(self._buckets) > self._max_keys:
                # The least recently seen key goes; it starts full when it comes back,
                # which is no worse than a client with a fresh address.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate
