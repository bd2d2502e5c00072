"""Small helpers for the Slack and Discord end-to-end tests: reading the plane's event
bus, and a per-thread wiring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from ironclaw.contract.enums import SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.runtime.eventbus import Envelope
from tests.channels.plane import ChatWiring, wire


async def published(plane: ControlPlaneHandles, types: str = "*") -> list[Any]:
    """Every event of ``types`` the bus still holds, oldest first."""
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


async def wire_per_thread(plane: ControlPlaneHandles, chat: ChatWiring) -> None:
    """Wire ``chat`` with one session per thread, so a reply goes back to its thread."""
    group = await wire(plane, chat)
    for wiring in await plane.registry.wirings_for(group.id):
        await plane.registry.put_wiring(attrs.evolve(wiring,
                                                     session_mode=SessionMode.PER_THREAD))
