"""What the adapters over our own protocol clients share (IRC, XMPP, email).

* :class:`PlatformAdapter`: the channel type and instance (the adapter protocol's
  ``name`` and ``instance``), the durable state and the delivery ledger.
* :class:`LinkedAdapter`: an adapter over one live connection (a *link*) at a time,
  which deliveries share with the receive loop. :meth:`LinkedAdapter.serve_link` runs a
  link: its reader fills a small queue, so a slow router never stops the reader from
  answering the server's keep-alives, and the adapter's ``hand_over`` drains the queue
  to the router. The link is published to deliveries once it is ready, and withdrawn
  when it ends; what the reader already took is still handed over before the loss is
  raised (to the supervisor, which reconnects). :meth:`LinkedAdapter.usable_link` is a
  delivery's wait for a live link, bounded by ``deliver_wait``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

import trio

from ..adapters import AdapterContext
from ..base import DeliveryFailed, InboundEvent
from ..ledger import IdempotentDelivery

__all__ = ["Link", "LinkedAdapter", "PlatformAdapter"]

INBOUND_QUEUE = 64

ItemT = TypeVar("ItemT")


class Link(Protocol):
    """One connection: ``run`` reads into a ``trio.MemorySendChannel`` (of the adapter's
    item type) until the connection ends, raising why; it sets ``ready`` once usable and
    ``closed`` when over."""

    ready: trio.Event
    closed: trio.Event

    async def run(self, inbound: Any, /) -> None: ...


LinkT = TypeVar("LinkT", bound=Link)


class PlatformAdapter:
    CHANNEL: ClassVar[str]  # the channel type
    PLATFORM: ClassVar[str]  # its name in messages ("IRC")

    def __init__(self, context: AdapterContext, instance: str) -> None:
        self._instance = instance
        self._state = context.state
        self._idempotent = IdempotentDelivery(context.ledger)

    @property
    def name(self) -> str:
        return self.CHANNEL

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def label(self) -> str:
        """``<type>/<instance>`` for logs."""
        return f"{self.CHANNEL}/{self._instance or 'default'}"


class LinkedAdapter(PlatformAdapter, Generic[LinkT, ItemT]):
    def __init__(self, context: AdapterContext, instance: str, *,
                 deliver_wait: float) -> None:
        super().__init__(context, instance)
        self._deliver_wait = deliver_wait
        self._link: LinkT | None = None
        self._link_changed = trio.lowlevel.ParkingLot()

    @property
    def link(self) -> LinkT | None:
        """The connection deliveries use now, if one is up."""
        return self._link

    async def serve_link(
        self, link: LinkT, events: trio.MemorySendChannel[InboundEvent],
        hand_over: Callable[[trio.MemorySendChannel[InboundEvent],
                             trio.MemoryReceiveChannel[ItemT], LinkT], Awaitable[None]],
        *, on_ready: Callable[[LinkT], Awaitable[None]], lost: Exception,
        task_status: trio.TaskStatus[None],
    ) -> NoReturn:
        """Run ``link`` until it ends; ``on_ready`` runs once it is usable, before it is
        published and the adapter reports started. Raises why the link ended, else
        ``lost``."""
        send, receive = trio.open_memory_channel[ItemT](INBOUND_QUEUE)
        failure: Exception | None = None

        async def run_link() -> None:
            nonlocal failure
            try:
                async with send:
                    await link.run(send)
            except Exception as exc:  # raised below, once what was read is handed over
                failure = exc

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hand_over, events, receive, link)
                nursery.start_soon(run_link)
                await _first_set(link.ready, link.closed)
                if link.ready.is_set() and not link.closed.is_set():
                    await on_ready(link)
                    self._set_link(link)
                    task_status.started()
        finally:
            self._set_link(None)
        raise failure if failure is not None else lost

    def _set_link(self, link: LinkT | None) -> None:
        self._link = link
        self._link_changed.unpark_all()

    async def usable_link(self) -> LinkT:
        """The live connection, waiting up to ``deliver_wait`` for one."""
        with trio.move_on_after(self._deliver_wait):
            while self._link is None or self._link.closed.is_set():
                await self._link_changed.park()
            return self._link
        raise DeliveryFailed(f"not connected to the {self.PLATFORM} server", retryable=True)


async def _first_set(*events: trio.Event) -> None:
    """Wait until any of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)
