"""How the agent behaves when the model is slow, overloaded or down.

Retries absorb the short blips (a 429, a 503, a dropped connection); the breaker stops
the agent from hammering a provider that is plainly down, so a backlog of messages
fails fast with an apology instead of each one waiting out a full retry ladder.
Both read time from Trio's clock, so tests drive them with a virtual clock.
"""

from __future__ import annotations

import email.utils
import enum
import random
import time
from collections.abc import Callable

import attrs
import trio


class ProviderError(Exception):
    """The turn cannot get an answer from the model."""


class HostUnreachable(Exception):
    """Nobody listens on the model proxy's socket: the control plane is not serving this
    sandbox (it died, or it is stopping us). That says nothing about the model, so it
    is not a ``ProviderError``: the turn is left unfinished, not failed with an
    apology, and runs again once a control plane serves the session."""


class ProviderUnavailable(ProviderError):
    """Transient trouble that outlasted the retries, or the breaker is open."""


class BreakerOpen(ProviderUnavailable):
    pass


class ProviderRejected(ProviderError):
    """The proxy or provider refused the request (a 4xx other than 429). Retrying the
    same request would get the same answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class ProviderProtocolError(ProviderError):
    """The answer did not have the shape of the provider's API."""


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with jitter. ``retries`` counts the attempts after the first."""

    retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # Retry-After is honoured, but never beyond this: one header must not park a turn.
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** attempt))
        # "Equal jitter": at least half the step, so retries still spread out, and
        # never all clients in lock-step.
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def honour_retry_after(self, header: str | None) -> float | None:
        delay = parse_retry_after(header)
        return None if delay is None else min(delay, self.max_retry_after_s)


def parse_retry_after(header: str | None, *, now: Callable[[], float] | None = None
                      ) -> float | None:
    """Seconds to wait, from either form of Retry-After: delta-seconds or an HTTP date."""
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = now() if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after ``failures_to_open`` consecutive failed attempts; after the cooldown
    it lets one trial request through (half-open), which closes it on success and
    reopens it on failure."""

    def __init__(self, *, failures_to_open: int, cooldown_s: float,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self._threshold = max(1, failures_to_open)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at = 0.0
        self.state = BreakerState.CLOSED

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def check(self) -> None:
        """Raise BreakerOpen if no request may go out now."""
        if self.state is not BreakerState.OPEN:
            return
        waited = self._clock() - self._opened_at
        if waited < self._cooldown_s:
            raise BreakerOpen(
                f"model breaker open for another {self._cooldown_s - waited:.1f}s")
        self.state = BreakerState.HALF_OPEN

    def record_success(self) -> None:
        self._consecutive = 0
        self.state = BreakerState.CLOSED

    def record_failure(self) -> None:
        self._consecutive += 1
        if self.state is BreakerState.HALF_OPEN or self._consecutive >= self._threshold:
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()
