"""Small helpers shared by the HTTP-platform channel tests (Telegram, Matrix)."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

from ironclaw.contract.enums import SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.runtime.eventbus import Envelope, Subscription

from .plane import ChatWiring, wire


async def wire_per_thread(plane: ControlPlaneHandles, chat: ChatWiring) -> None:
    """Wire ``chat`` with one session per thread, so replies go back to the thread."""
    group = await wire(plane, chat)
    for wiring in await plane.registry.wirings_for(group.id):
        await plane.registry.put_wiring(attrs.evolve(wiring,
                                                     session_mode=SessionMode.PER_THREAD))


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


async def published(plane: ControlPlaneHandles) -> list[object]:
    """Every event the bus still holds."""
    out: list[object] = []
    async with plane.events.subscribe("*", since=0) as subscription:
        while True:
            try:
                item = subscription.receive_nowait()
            except trio.WouldBlock:
                return out
            if isinstance(item, Envelope):
                out.append(item.event)


def assert_secret_absent(secret: str, caplog: pytest.LogCaptureFixture,
                         events: list[object]) -> None:
    """Neither a log record (message, exception text) nor a published event shows
    ``secret``."""
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        assert secret not in text, f"secret in log record from {record.name}"
    for event in events:
        assert secret not in repr(event), f"secret in event {type(event).__name__}"
