"""Events in tests: a sink that records what it is given, and readers of a running
plane's event bus.

:class:`RecordingSink` stands in for the event bus where a test drives one actor: it
keeps every event with the (virtual) time it came, and lets the test wait for events
of one kind, by class or by type name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ironclaw.host.app import ControlPlaneHandles
from ironclaw.runtime.eventbus import Envelope, Subscription


class RecordingSink:
    """An event sink that keeps (time, event) pairs; ``kind`` is a class or a type.

    ``wait_limit`` bounds each wait in Trio's seconds: under autojump_clock, a wait for
    an event that never comes then fails fast instead of hanging."""

    def __init__(self, *, wait_limit: float = float("inf")) -> None:
        self.records: list[tuple[float, Any]] = []
        self._changed = trio.Event()
        self._wait_limit = wait_limit

    @property
    def events(self) -> list[Any]:
        return [event for _, event in self.records]

    def publish(self, event: Any) -> None:
        self.records.append((trio.current_time(), event))
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: type[Any] | str) -> list[Any]:
        return [event for _, event in self.records if _is(event, kind)]

    def times_of(self, kind: type[Any] | str) -> list[float]:
        return [at for at, event in self.records if _is(event, kind)]

    async def wait_for(self, kind: type[Any] | str, count: int = 1) -> list[Any]:
        with trio.fail_after(self._wait_limit):
            while len(self.of(kind)) < count:
                await self._changed.wait()
        return self.of(kind)


def _is(event: Any, kind: type[Any] | str) -> bool:
    return getattr(event, "type", None) == kind if isinstance(kind, str) else (
        isinstance(event, kind))


async def published(plane: ControlPlaneHandles, types: str = "*") -> list[Any]:
    """Every event of ``types`` the plane's bus still holds, oldest first."""
    found: list[Any] = []
    async with plane.events.subscribe(types, since=0) as subscription:
        while True:
            try:
                item = subscription.receive_nowait()
            except trio.WouldBlock:
                return found
            if isinstance(item, Envelope):
                found.append(item.event)


async def wait_published(plane: ControlPlaneHandles, types: str,
                         predicate: Callable[[Any], bool] = lambda _event: True, *,
                         count: int = 1) -> Any:
    """The ``count``-th event of ``types`` (already published or yet to come) that
    satisfies ``predicate``."""
    async with plane.events.subscribe(types, since=0) as subscription:
        async for item in subscription:
            if isinstance(item, Envelope) and predicate(item.event):
                count -= 1
                if count == 0:
                    return item.event
    raise AssertionError("the event bus closed")


async def next_event(subscription: Subscription) -> Any:
    """The next event on ``subscription`` (lag markers skipped)."""
    while True:
        item = await subscription.receive()
        if isinstance(item, Envelope):
            return item.event


async def routed_decisions(subscription: Subscription, count: int) -> list[str]:
    """The decisions of the next ``count`` ``message.routed`` events."""
    return [(await next_event(subscription)).decision for _ in range(count)]


async def wait_delivered(plane: ControlPlaneHandles, count: int) -> None:
    """Until the delivery pipeline has settled ``count`` deliveries since the plane
    started (the platform answered and the receipt is recorded)."""
    async with plane.events.subscribe("delivery.delivered", since=0) as subscription:
        for _ in range(count):
            await next_event(subscription)
