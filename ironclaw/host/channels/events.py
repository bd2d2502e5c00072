"""Events the channel layer publishes. They carry names and counts, never message text."""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = ["ChannelDown", "ChannelParked", "ChannelResumed", "ChannelUp"]


@attrs.frozen
class ChannelUp:
    """The adapter's receive loop is connected (``attempt`` counts from 1)."""

    type: ClassVar[str] = "channel.up"
    channel: str
    instance: str
    attempt: int


@attrs.frozen
class ChannelDown:
    """The receive loop stopped. ``retry_in`` is the backoff before the next attempt, or
    ``None`` when none is scheduled (parked, or the actor is stopping)."""

    type: ClassVar[str] = "channel.down"
    channel: str
    instance: str
    reason: str
    consecutive_failures: int
    retry_in: float | None


@attrs.frozen
class ChannelParked:
    """Too many consecutive failures: the receive loop stays down until resumed."""

    type: ClassVar[str] = "channel.parked"
    channel: str
    instance: str
    consecutive_failures: int
    reason: str


@attrs.frozen
class ChannelResumed:
    type: ClassVar[str] = "channel.resumed"
    channel: str
    instance: str
