"""Delivery's knobs, its retry backoff, and the agent-to-agent rate window."""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

__all__ = ["DeliveryPolicy", "RateWindow"]


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen
class DeliveryPolicy:
    # Per-session mailbox: how many batches a session's tail may queue before its
    # submit waits. Back-pressure lands on that session's tail alone.
    inbox_batches: int = attrs.field(default=4, validator=_positive)
    # Failing sends: attempts in all (the first included), then dead-lettered.
    max_attempts: int = attrs.field(default=5, validator=_positive)
    backoff_initial: float = attrs.field(default=1.0, validator=_positive)
    backoff_max: float = attrs.field(default=300.0, validator=_positive)
    max_retry_after: float = attrs.field(default=3600.0, validator=_positive)
    # Rows waiting out of line. Retries: past this many, a new failure waits for a
    # slot (only this session's main line waits). Holds (deliver_after): past this
    # many, or further ahead than max_hold seconds, the row is refused.
    max_retrying: int = attrs.field(default=256, validator=_positive)
    max_held: int = attrs.field(default=1000, validator=_positive)
    max_hold: float = attrs.field(default=30 * 86_400.0, validator=_positive)
    # Agent-to-agent: hops along a chain of agents, and sends per sender per minute.
    hop_limit: int = attrs.field(default=5, validator=_positive)
    a2a_per_minute: int = attrs.field(default=30, validator=_positive)
    # A session's worker with nothing in flight retires after this long idle.
    idle_retire: float = attrs.field(default=300.0, validator=_positive)
    # Report progress at least every this many rows within a long batch.
    progress_every: int = attrs.field(default=64, validator=_positive)
    # A batch's progress is reported this long after it was handled, so the batches
    # of a busy session share one report (two commits) and a reply never waits on it.
    # 0: report after every batch.
    report_delay: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Seconds before the next attempt after ``failures`` failed ones; a platform's
        ``retry_after`` is honoured (capped at ``max_retry_after``)."""
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, failures - 1))
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


class RateWindow:
    """At most ``limit`` admissions per ``window_us``, sliding. Admitting the same key
    again while it is inside the window costs nothing (a retried send is one send)."""

    def __init__(self, limit: int, window_us: int = 60_000_000) -> None:
        self._limit = limit
        self._window_us = window_us
        self._admitted: deque[tuple[int, str]] = deque()

    def admit(self, key: str, now_us: int) -> bool:
        while self._admitted and self._admitted[0][0] <= now_us - self._window_us:
            self._admitted.popleft()
        if any(k == key for _, k in self._admitted):
            return True
        if len(self._admitted) >= self._limit:
            return False
        self._admitted.append((now_us, key))
        return True

    def idle(self, now_us: int) -> bool:
        return not self._admitted or self._admitted[-1][0] <= now_us - self._window_us
