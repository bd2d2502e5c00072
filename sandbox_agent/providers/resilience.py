"""How the agent behaves when the model is slow, overloaded or down.

Retries absorb the short blips; the breaker stops the agent from hammering a provider
that is plainly down, so a backlog of messages fails fast with an apology instead of
each one waiting out a full retry ladder. Both read time from Trio's clock, so tests
drive them with a virtual clock.

What is retried follows the official SDKs' rules (:func:`should_retry`): a dropped
connection, 408, 409, 429 and every 5xx, unless the server says otherwise in
``x-should-retry``. How long to wait comes from ``retry-after-ms``, then
``retry-after`` (seconds, fractional allowed, or an HTTP date), else exponential backoff
with jitter. Error bodies, in Anthropic's, OpenAI's or the proxy's shape, are parsed into
a :class:`ProviderFailure` with a kind from a closed set.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time
from collections.abc import Callable, Mapping

import attrs
import trio

from ironclaw.contract.modelwire import FailureKind, ProviderFailure, parse_failure

__all__ = [
    "BreakerOpen", "CircuitBreaker", "FailureKind", "ProviderError", "ProviderFailure",
    "ProviderProtocolError", "ProviderRejected", "ProviderUnavailable", "RetryPolicy",
    "parse_failure", "parse_retry_after", "should_retry",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429})


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """The SDKs' rule: the server's ``x-should-retry`` wins; else 408, 409, 429, 5xx."""
    verdict = headers.get("x-should-retry", "").strip().lower()
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status in RETRYABLE_STATUSES or status >= 500


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
    """The proxy or provider refused the request, and said not to retry (or the status
    is one a retry would only repeat)."""

    def __init__(self, status: int, detail: str,
                 failure: ProviderFailure | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.failure = failure or ProviderFailure(status, FailureKind.UNKNOWN, detail)


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

    def server_delay(self, headers: Mapping[str, str]) -> float | None:
        """The wait the server asked for (``retry-after-ms`` first), capped; None when
        it asked for none."""
        millis = _number(headers.get("retry-after-ms"))
        if millis is not None:
            return min(millis / 1000, self.max_retry_after_s)
        return self.honour_retry_after(headers.get("retry-after"))


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_retry_after(header: str | None, *, now: Callable[[], float] | None = None
                      ) -> float | None:
    """Seconds to wait, from either form of Retry-After: delta-seconds (fractional
    allowed, as the SDKs accept) or an HTTP date."""
    if header is None:
        return None
    value = header.strip()
    seconds = _number(value)
    if seconds is not None:
        return seconds
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
