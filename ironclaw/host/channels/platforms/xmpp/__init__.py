"""XMPP: one-to-one chats and multi-user chat rooms (MUC), through our own client on
Trio sockets (``link.py``: the connection; ``protocol.py``: the wire format).

Identities on the platform:

* a one-to-one chat's ``platform_id`` is the peer's bare JID (``alice@example.org``),
  which is also ``sender_handle``; such a chat is ``direct`` and ``mentioned``;
* a room's ``platform_id`` is its bare JID (``room@conference.example.org``);
  ``sender_handle`` is the occupant's room JID (``room@.../nick``): a nick in a room
  is not an account, and anonymous rooms do not tell us the account;
* ``mentioned`` in a room: our nick as a whole word in the body;
* ``thread_id``: the message's ``<thread>``; a reply carries it back.

Duplicates: a server-assigned ``stanza-id`` (XEP-0359) stamped by the room (for room
messages) or by our own server (one-to-one, with message archiving), else the sender's
full JID with its message ``id``. Stream management (XEP-0198) makes a reconnect, and a
control-plane restart within the server's hibernation time, lose nothing: the resume
point moves only with what is committed (see ``link.py``).

Files: out-of-band links in, HTTP File Upload out, where configured (``files.py``).
"""

from __future__ import annotations

import hashlib
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
from ironclaw.host.channels.platform import Measure, deliver_in_parts, split_text
from ironclaw.host.channels.settings import ChannelSettings

from .._linked import LinkedAdapter
from .config import XmppConfig, check_settings
from .files import file_message, oob_attachment, parse_slot, put_file, slot_request
from .link import Inbound, Link, SmResume, Unconfirmed, XmppLinkLost, open_tcp
from .protocol import (
    NS,
    is_mentioned,
    is_valid_jid,
    message_stanza,
    parse_message,
    tag,
)

__all__ = ["XmppAdapter", "check_settings", "create_adapter", "stanza_id"]

logger = logging.getLogger(__name__)

CHANNEL = "xmpp"
SM_CURSOR = "sm"
PART_CHARS = 10_000  # far under servers' stanza limits (Prosody: 256 KiB)


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> XmppAdapter:
    return XmppAdapter(XmppConfig.from_settings(settings), context, settings.instance)


def stanza_id(key: str) -> str:
    """The message id for one part (``key`` is ``<outbound_id>`` or
    ``<outbound_id>#<n>``): the same on every retry, so a resend is recognisable."""
    return "ironclaw-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class XmppAdapter(LinkedAdapter[Link, Inbound]):
    CHANNEL = CHANNEL
    PLATFORM = "XMPP"

    def __init__(self, config: XmppConfig, context: AdapterContext, instance: str = "", *,
                 connect: Callable[[XmppConfig], Awaitable[trio.abc.Stream]] = open_tcp
                 ) -> None:
        super().__init__(context, instance, deliver_wait=config.deliver_wait)
        self.config = config
        self._connect = connect
        self._http = context.http
        self._rooms = {room: config.nick for room in config.rooms}

    @property
    def carries_files(self) -> bool:
        """Only with an upload service: without one, a file becomes a text notice."""
        return self.config.upload_service is not None

    # -- receiving ---------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        resume = SmResume.decode(await self._state.cursor(SM_CURSOR))
        await self.serve_link(Link(self.config, resume, self._connect), events,
                              self._hand_over, on_ready=self._ready,
                              lost=XmppLinkLost("the XMPP connection ended"),
                              task_status=task_status)

    async def _ready(self, link: Link) -> None:
        if link.sm_id is not None and not link.resumed:
            await self._state.save_cursor(SM_CURSOR, SmResume(link.sm_id, 0).encode())
        logger.info("%s: %s, stream management %s", self.label,
                    "resumed" if link.resumed else "connected",
                    "on" if link.stream_managed else "off")

    async def _hand_over(self, events: trio.MemorySendChannel[InboundEvent],
                         receive: trio.MemoryReceiveChannel[Inbound], link: Link) -> None:
        async with receive:
            async for item in receive:
                cursor = None
                if item.position and link.sm_id is not None:
                    cursor = (SM_CURSOR, SmResume(link.sm_id, item.position).encode())
                message = None
                if item.stanza.tag == tag(NS.CLIENT, "message"):
                    message = parse_message(item.stanza, self.config.jid, self._rooms)
                if message is not None:
                    mentioned = not message.group or is_mentioned(message.body,
                                                                  self.config.nick)
                    text, files = oob_attachment(item.stanza, message.body, self._http,
                                                 self.config.file_hosts)
                    event = InboundEvent(
                        channel=CHANNEL, instance=self._instance, platform_id=message.chat,
                        sender_handle=message.sender, text=text,
                        thread_id=message.thread, mentioned=mentioned,
                        direct=not message.group, platform_message_id=message.message_id,
                        sender_display_name=message.nick, attachments=files)
                    await self._state.hand_over(events, event, event_id=message.dedup_id,
                                                cursor=cursor)
                elif cursor is not None and receive.statistics().current_buffer_used == 0:
                    # Not a message: nothing to route. Save the resume point at the end
                    # of a burst rather than for every presence.
                    await self._state.save_cursor(*cursor)
                else:
                    continue
                if item.position:
                    link.acked_in = max(link.acked_in, item.position)

    # -- delivering --------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        target = delivery.platform_id
        if not is_valid_jid(target) or "/" in target:
            raise DeliveryFailed("not a bare XMPP address", retryable=False)
        if delivery.file is not None:
            return await self._idempotent.deliver(delivery, self._send_file)
        if not delivery.text.strip():
            raise DeliveryFailed("nothing to send: the reply is blank", retryable=False)
        parts = split_text(delivery.text, PART_CHARS, Measure.CHARS)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_part(self, part: OutboundDelivery) -> str:
        ident = stanza_id(part.outbound_id)
        kind = "groupchat" if part.platform_id in self._rooms else "chat"
        stanza = message_stanza(part.platform_id, _xml_safe(part.text), kind=kind,
                                stanza_id=ident, thread=part.thread_id)
        await self._confirmed(stanza)
        return ident

    async def _confirmed(self, stanza: bytes) -> None:
        link = await self.usable_link()
        try:
            await link.send_confirmed(stanza)
        except Unconfirmed as lost:
            # The connection went before the server's acknowledgement. If the next
            # connection resumes the session, the server says whether it had the
            # stanza; only a stanza it did not have is sent again.
            link = await self.usable_link()
            if not (link.resumed and lost.session_id is not None
                    and link.sm_id == lost.session_id and link.resumed_acked >= lost.number):
                await link.send_confirmed(stanza)

    async def _send_file(self, delivery: OutboundDelivery) -> str:
        assert delivery.file is not None and self.config.upload_service is not None
        ident = stanza_id(delivery.outbound_id)
        link = await self.usable_link()
        answer = await link.query(slot_request(self.config.upload_service, f"slot-{ident}",
                                               delivery.file), f"slot-{ident}")
        slot = parse_slot(answer)
        if slot is None:
            raise DeliveryFailed("xmpp: the upload service gave no slot (the file may be "
                                 "over its size limit)", retryable=False)
        await put_file(self._http, slot, delivery.file, self.config.file_hosts)
        kind = "groupchat" if delivery.platform_id in self._rooms else "chat"
        caption = _xml_safe(delivery.text[:PART_CHARS])
        await self._confirmed(file_message(delivery.platform_id, slot.get_url, caption,
                                           kind=kind, stanza_id=ident,
                                           thread=delivery.thread_id))
        return ident


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters: drop them, keep tabs and newlines."""
    return "".join(c for c in text if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff"
                                                          and not "\ud800" <= c <= "\udfff"))
