"""Email: IMAP in (IDLE where the server has it, else polling), SMTP submission out.

Identities: a correspondent is one chat. ``platform_id`` and ``sender_handle`` are the
sender's address (lower-case); every mail is ``direct`` and ``mentioned`` (it is
addressed to the agent). ``thread_id`` is the thread's root ``Message-ID`` (the first
of ``References``, else ``In-Reply-To``, else the mail's own). A reply carries the
mail it answers in ``In-Reply-To`` and the root, then that mail, in ``References``.

Only mail from ``allowed_senders`` is read, and not when our server's
``Authentication-Results`` says the sender was forged (``message.py``).

Resume: the cursor ``uid`` is ``<UIDVALIDITY>:<last UID handled>``; it moves with each
mail handed over (in the same transaction as its seen id, the ``Message-ID``), so a
restart continues after the last mail committed. The very first start, or a mailbox
whose UIDVALIDITY changed, only takes the position: older mail is not answered. The
mailbox is opened read-only and nothing is marked or deleted: the mail stays the
user's. Duplicates: the sender with the mail's ``Message-ID`` (scoped to the sender,
so nobody can suppress another's mail by reusing its id).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

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

from .._linked import PlatformAdapter
from .config import EmailConfig, check_settings
from .mailbox import Imap, MailLost, send_mail
from .message import read_mail, reply_message_id, write_reply

__all__ = ["EmailAdapter", "check_settings", "create_adapter"]

logger = logging.getLogger(__name__)

CHANNEL = "email"
UID_CURSOR = "uid"
BATCH = 50
PART_CHARS = 100_000
_MAX_SUBJECTS = 10_000


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> EmailAdapter:
    return EmailAdapter(EmailConfig.from_settings(settings), context, settings.instance)


def _parse_cursor(value: str | None) -> tuple[int, int] | None:
    validity, _, uid = (value or "").partition(":")
    if validity.isdigit() and uid.isdigit():
        return int(validity), int(uid)
    return None


class EmailAdapter(PlatformAdapter):
    CHANNEL = CHANNEL
    PLATFORM = "email"
    carries_files = True

    def __init__(self, config: EmailConfig, context: AdapterContext,
                 instance: str = "") -> None:
        super().__init__(context, instance)
        self.config = config
        # Thread root -> subject, for the replies' "Re:" (a reply after a restart, with
        # nothing remembered, says "Re: your message").
        self._subjects: OrderedDict[str, str] = OrderedDict()
        self._send_limiter = trio.CapacityLimiter(1)

    # -- receiving ---------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        imap = Imap(self.config)
        stop = threading.Event()
        try:
            mailbox = await trio.to_thread.run_sync(imap.open, abandon_on_cancel=True)
            saved = _parse_cursor(await self._state.cursor(UID_CURSOR))
            if saved is None or saved[0] != mailbox.validity:
                last = mailbox.next_uid - 1  # first start: answer nothing from before
                await self._state.save_cursor(UID_CURSOR, f"{mailbox.validity}:{last}")
            else:
                last = saved[1]
            logger.info("%s: connected, IDLE %s", self.label,
                        "on" if imap.idle_supported else "off (polling)")
            task_status.started()
            while True:
                uids = await trio.to_thread.run_sync(imap.new_uids, last, BATCH,
                                                     abandon_on_cancel=True)
                for uid in uids:
                    await self._take(events, imap, mailbox.validity, uid)
                    last = uid
                if len(uids) < BATCH:
                    await trio.to_thread.run_sync(imap.idle, self.config.idle_s, stop,
                                                  abandon_on_cancel=True)
        finally:
            stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(imap.close)

    async def _take(self, events: trio.MemorySendChannel[InboundEvent], imap: Imap,
                    validity: int, uid: int) -> None:
        cursor = (UID_CURSOR, f"{validity}:{uid}")
        size = await trio.to_thread.run_sync(imap.size, uid, abandon_on_cancel=True)
        raw = None
        if size is not None and size <= self.config.max_message_bytes:
            raw = await trio.to_thread.run_sync(imap.fetch, uid, abandon_on_cancel=True)
        else:
            logger.warning("email: message %d skipped: over max_message_bytes or unreadable",
                           uid)
        mail = None
        if raw is not None and len(raw) <= self.config.max_message_bytes:
            mail = read_mail(raw, me=self.config.address,
                             allowed=self.config.allowed_senders,
                             authserv_id=self.config.authserv_id)
        if mail is None:
            await self._state.save_cursor(*cursor)
            return
        if mail.thread_root is not None:
            self._remember_subject(mail.thread_root, mail.subject)
        event = InboundEvent(
            channel=CHANNEL, instance=self._instance, platform_id=mail.sender,
            sender_handle=mail.sender, text=mail.text, thread_id=mail.thread_root,
            mentioned=True, direct=True, platform_message_id=mail.message_id,
            attachments=mail.attachments)
        await self._state.hand_over(events, event,
                                    event_id=f"{mail.sender} {mail.message_id}"
                                    if mail.message_id else f"uid:{validity}:{uid}",
                                    cursor=cursor)

    def _remember_subject(self, root: str, subject: str) -> None:
        self._subjects[root] = subject
        self._subjects.move_to_end(root)
        while len(self._subjects) > _MAX_SUBJECTS:
            self._subjects.popitem(last=False)

    # -- delivering --------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        to = delivery.platform_id
        if to.count("@") != 1 or any(c.isspace() or c in "<>,;" for c in to):
            raise DeliveryFailed("not an email address", retryable=False)
        if delivery.file is not None:  # one mail: the caption, the file attached
            return await self._idempotent.deliver(delivery, self._send_part)
        if not delivery.text.strip():
            raise DeliveryFailed("nothing to send: the reply is blank", retryable=False)
        parts = split_text(delivery.text, PART_CHARS, Measure.CHARS)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_part(self, part: OutboundDelivery) -> str:
        message_id = reply_message_id(part.outbound_id, self.config.domain)
        root = part.thread_id if part.thread_id and part.thread_id.startswith("<") else None
        answering = part.in_reply_to if part.in_reply_to and part.in_reply_to.startswith(
            "<") else None
        message = write_reply(
            sender=self.config.address, to=part.platform_id, text=part.text,
            message_id=message_id, thread_root=root, answering=answering,
            subject=None if root is None else self._subjects.get(root), file=part.file)
        try:
            await trio.to_thread.run_sync(send_mail, self.config, message,
                                          limiter=self._send_limiter)
        except MailLost as exc:
            raise DeliveryFailed(str(exc), retryable=not exc.permanent) from None
        return message_id
