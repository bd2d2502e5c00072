"""The IRC channel adapter: a :class:`~.link.Link` per connection, events to the router,
replies as confirmed, paced ``PRIVMSG`` lines.

Identities on the platform:

* a channel's ``platform_id`` is its name, casefolded with the server's case mapping
  (``#IronClaw`` and ``#ironclaw`` are one channel on IRC, so they are one chat here);
* a private message to our nick is ``direct``, ``mentioned``, and its ``platform_id`` is
  the sender's casefolded nick (the reply goes back to that nick);
* ``sender_handle`` is the casefolded nick. IRC nicks are not authenticated: anyone
  may use a free nick. Grant roles to IRC handles only on a network that enforces nick
  registration.

Inbound events go to the router in order through a small queue, so that a slow router
never stops the reader from answering the server's ``PING``; when the connection ends,
what the reader already took from the server is still handed over before ``serve``
raises. IRC servers do not redeliver: a message sent to a channel while we are not in
it is not ours to receive. When the server tags messages with an IRCv3 ``msgid`` (a
bouncer or ``chathistory`` may replay them), that id is the duplicate-detection key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ironclaw.host.channels.adapters import AdapterContext
from ironclaw.host.channels.base import (
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import IdempotentDelivery
from ironclaw.host.channels.platform import deliver_in_parts

from .config import IrcConfig
from .link import IrcLinkLost, Link, Privmsg, open_stream
from .protocol import ProtocolError, format_line, outgoing_lines, payload_budget, valid_target

__all__ = ["IrcAdapter"]

logger = logging.getLogger(__name__)

CHANNEL = "irc"
# Lines per idempotent part: each part is confirmed with one PING round trip.
LINES_PER_PART = 4
INBOUND_QUEUE = 64


class IrcAdapter:
    def __init__(self, config: IrcConfig, context: AdapterContext, instance: str = "", *,
                 connect: Callable[[IrcConfig], Awaitable[trio.abc.Stream]] = open_stream
                 ) -> None:
        self.config = config
        self._connect = connect
        self._instance = instance
        self._state = context.state
        self._idempotent = IdempotentDelivery(context.ledger)
        self._link: Link | None = None
        self._link_changed = trio.lowlevel.ParkingLot()

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def link(self) -> Link | None:
        """The connection deliveries use now, if one is up."""
        return self._link

    # -- receiving -----------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        link = Link(self.config, self._connect)
        send, receive = trio.open_memory_channel[Privmsg](INBOUND_QUEUE)
        lost: Exception | None = None

        async def run_link() -> None:
            nonlocal lost
            try:
                async with send:
                    await link.run(send)
            except Exception as exc:  # reported below, after the queue is drained
                lost = exc

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._hand_over, events, receive, link)
                nursery.start_soon(run_link)
                await _first_set(link.ready, link.closed)
                if link.ready.is_set() and not link.closed.is_set():
                    self._set_link(link)
                    logger.info("irc/%s: registered, in %d of %d channels",
                                self._instance or "default", len(link.joined),
                                len(self.config.channels))
                    task_status.started()
        finally:
            self._set_link(None)
        raise lost if lost is not None else IrcLinkLost("the IRC connection ended")

    async def _hand_over(self, events: trio.MemorySendChannel[InboundEvent],
                         receive: trio.MemoryReceiveChannel[Privmsg], link: Link) -> None:
        async with receive:
            async for message in receive:
                fold = link.casemap.fold
                chat = fold(message.sender) if message.direct else fold(message.target)
                event = InboundEvent(
                    channel=CHANNEL, instance=self._instance, platform_id=chat,
                    sender_handle=fold(message.sender), text=message.text,
                    mentioned=message.mentioned, direct=message.direct,
                    platform_message_id=message.message_id,
                    sender_display_name=message.sender)
                await self._state.hand_over(
                    events, event, event_id=message.message_id if message.server_id else None)

    def _set_link(self, link: Link | None) -> None:
        self._link = link
        self._link_changed.unpark_all()

    # -- delivering ----------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        target = delivery.platform_id
        if not valid_target(target):
            raise DeliveryFailed("not an IRC channel or nick", retryable=False)
        link = await self._usable_link()
        lines = outgoing_lines(delivery.text, payload_budget(target, link.prefix_len))
        if not lines:
            raise DeliveryFailed("nothing to send: the reply is blank", retryable=False)
        parts = ["\n".join(lines[at:at + LINES_PER_PART])
                 for at in range(0, len(lines), LINES_PER_PART)]
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_part(self, part: OutboundDelivery) -> str:
        link = await self._usable_link()  # the connection may have changed between parts
        try:
            wire = [format_line("PRIVMSG", part.platform_id, line)
                    for line in part.text.split("\n")]
        except ProtocolError:
            raise DeliveryFailed("the reply does not fit IRC's line format",
                                 retryable=False) from None
        return await link.send_confirmed(part.platform_id, wire)

    async def _usable_link(self) -> Link:
        """The live connection, waiting up to ``deliver_wait`` for one."""
        with trio.move_on_after(self.config.deliver_wait):
            while self._link is None or self._link.closed.is_set():
                await self._link_changed.park()
            return self._link
        raise DeliveryFailed("not connected to the IRC server", retryable=True)


async def _first_set(*events: trio.Event) -> None:
    """Wait until any of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)
