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

Inbound events go to the router in order through a small queue (the link-holding
adapter's shape, :mod:`.._linked`), so that a slow router never stops the reader from
answering the server's ``PING``. IRC servers do not redeliver: a message sent to a
channel while we are not in it is not ours to receive. When the server tags messages
with an IRCv3 ``msgid`` (a bouncer or ``chathistory`` may replay them), that id is the
duplicate-detection key.
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
from ironclaw.host.channels.platform import deliver_in_parts

from .._linked import LinkedAdapter
from .config import IrcConfig
from .link import IrcLinkLost, Link, Privmsg, open_stream
from .protocol import ProtocolError, format_line, outgoing_lines, payload_budget, valid_target

__all__ = ["IrcAdapter"]

logger = logging.getLogger(__name__)

CHANNEL = "irc"
# Lines per idempotent part: each part is confirmed with one PING round trip.
LINES_PER_PART = 4


class IrcAdapter(LinkedAdapter[Link, Privmsg]):
    CHANNEL = CHANNEL
    PLATFORM = "IRC"

    def __init__(self, config: IrcConfig, context: AdapterContext, instance: str = "", *,
                 connect: Callable[[IrcConfig], Awaitable[trio.abc.Stream]] = open_stream
                 ) -> None:
        super().__init__(context, instance, deliver_wait=config.deliver_wait)
        self.config = config
        self._connect = connect

    # -- receiving -----------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.serve_link(Link(self.config, self._connect), events, self._hand_over,
                              on_ready=self._ready,
                              lost=IrcLinkLost("the IRC connection ended"),
                              task_status=task_status)

    async def _ready(self, link: Link) -> None:
        logger.info("%s: registered, in %d of %d channels", self.label, len(link.joined),
                    len(self.config.channels))

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

    # -- delivering ----------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        target = delivery.platform_id
        if not valid_target(target):
            raise DeliveryFailed("not an IRC channel or nick", retryable=False)
        link = await self.usable_link()
        lines = outgoing_lines(delivery.text, payload_budget(target, link.prefix_len))
        if not lines:
            raise DeliveryFailed("nothing to send: the reply is blank", retryable=False)
        parts = ["\n".join(lines[at:at + LINES_PER_PART])
                 for at in range(0, len(lines), LINES_PER_PART)]
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_part(self, part: OutboundDelivery) -> str:
        link = await self.usable_link()  # the connection may have changed between parts
        try:
            wire = [format_line("PRIVMSG", part.platform_id, line)
                    for line in part.text.split("\n")]
        except ProtocolError:
            raise DeliveryFailed("the reply does not fit IRC's line format",
                                 retryable=False) from None
        return await link.send_confirmed(part.platform_id, wire)
