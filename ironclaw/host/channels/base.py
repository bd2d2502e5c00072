"""The channel layer's vocabulary: messages, errors and the adapter protocol.

A *channel* is a chat platform type (``"local"``, ``"telegram"``, ...); an *instance* is
one configured connection to it (``""`` is the default instance). An adapter speaks one
platform for one instance and has exactly two jobs:

* ``serve``: a receive loop that turns platform traffic into :class:`InboundEvent`\\s and
  pushes them into the channel it is given, until cancelled. An exception out of it means
  "connection lost"; reconnecting is the supervisor's job, not the adapter's. Returning
  normally is treated the same way (the loop is supposed to run until cancelled).
* ``deliver``: send one :class:`OutboundDelivery`, idempotently by ``outbound_id`` (see
  :mod:`ironclaw.host.channels.ledger` for the bookkeeping helper).

Error texts: an exception of this module's :class:`ChannelError` family is written by us
or by an adapter to be safe to log and publish. Any other exception's text may embed
what it must not (an HTTP client error names the URL, and some platforms put the bot
token in the URL), so :func:`safe_reason` reduces foreign exceptions to their type name.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.host.attachments import InboundAttachment, OutboundFile
from ironclaw.runtime import Reply

__all__ = [
    "ChannelAdapter",
    "ChannelError",
    "ChannelKey",
    "ChannelUnavailable",
    "Deliver",
    "DeliveryFailed",
    "DeliveryReceipt",
    "InboundEvent",
    "OutboundDelivery",
    "safe_reason",
]

#: ``(channel, instance)``; instance ``""`` is the default instance of that channel type.
ChannelKey = tuple[str, str]

_MAX_REASON_CHARS = 300


@attrs.frozen
class InboundEvent:
    """One message a platform handed us, before routing."""

    channel: str  # channel type, e.g. "local", "telegram"
    instance: str  # adapter instance name; "" means the default instance of that type
    platform_id: str  # the chat/room/conversation id on the platform
    sender_handle: str  # raw sender handle as the platform gives it (the router namespaces it)
    text: str
    thread_id: str | None = None
    mentioned: bool = False  # the platform's own notion of "the bot was mentioned"
    # A one-to-one chat with the bot (Telegram "private", Slack "im", a Discord DM, ...):
    # where owners may decide changes from chat, and where pairing replies go.
    direct: bool = False
    platform_message_id: str | None = None
    sender_display_name: str | None = None
    received_at: int = attrs.field(factory=now_us)  # integer microseconds, UTC
    # The adapter's dedup identity for the event (what it records as seen), set when it
    # hands the event over. The router derives the inbound row's id from it, so an
    # event routed again after a crash between the router's commit and the seen record
    # is written once, not answered twice.
    event_id: str | None = None
    # Answered exactly once by the router: ``ok(None)`` once every row for this event is
    # committed, or ``fail(InboundRefused(reason))`` when it committed none because the
    # session's inbound queue is full (nothing is durable then). An adapter that must
    # only acknowledge durable messages (invariant 10) awaits ``accepted.wait()``.
    accepted: Reply[None] | None = attrs.field(default=None, eq=False, repr=False)
    # Files the message carries, not yet fetched: the router has them stored into the
    # session's workspace (ironclaw.host.attachments) once it knows the session.
    attachments: tuple[InboundAttachment, ...] = ()


@attrs.frozen
class OutboundDelivery:
    """One reply to put on a platform."""

    outbound_id: str  # the outbound message id: the idempotency key
    channel: str
    instance: str
    platform_id: str
    thread_id: str | None
    text: str
    # A file to upload with ``text`` as its caption (send_file). An adapter that cannot
    # carry files never sees one: the channel actor turns it into a text notice.
    file: OutboundFile | None = None
    # The platform's id of the message this answers, from the host's record of it
    # (never from the agent); None for a message of the agent's own.
    in_reply_to: str | None = None


@attrs.frozen
class DeliveryReceipt:
    outbound_id: str
    platform_message_id: str
    # True when this outbound_id was already delivered and nothing was sent again.
    duplicate: bool


class ChannelError(Exception):
    """Base of the channel layer's typed errors; their messages are safe to log."""


class DeliveryFailed(ChannelError):
    """A delivery did not happen.

    ``retryable`` says whether sending the same delivery again may succeed; when the
    platform said how long to wait (HTTP 429 ``Retry-After``), ``retry_after`` carries it
    in seconds. ``outbound_id`` is filled in by the channel actor when the adapter did not,
    so a caller collecting replies on one channel can match failures to deliveries.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        outbound_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.outbound_id = outbound_id


class ChannelUnavailable(ChannelError):
    """No adapter can take this right now: not configured, stopped, or not serving."""


class InboundRefused(ChannelUnavailable):
    """The router committed nothing of a message: its session's inbound queue is at its
    byte cap. Nothing is durable, so the platform must not be told it was taken; it
    may send it again once the session has worked through its queue."""


@attrs.frozen(eq=False)
class Deliver:
    """A channel actor's mailbox message: deliver this, then answer ``reply`` once, with
    the receipt or with :class:`DeliveryFailed` (which ``reply.wait()`` raises). A sender
    that stops waiting loses only the answer: the delivery may still happen, and sending
    it again returns a duplicate receipt."""

    delivery: OutboundDelivery
    reply: Reply[DeliveryReceipt] = attrs.field(factory=Reply, eq=False)


class ChannelAdapter(Protocol):
    """One platform connection. See the module docstring for the contract."""

    @property
    def name(self) -> str:
        """The channel type, e.g. ``"telegram"``."""
        ...

    @property
    def instance(self) -> str:
        """The instance name; ``""`` for the default instance."""
        ...

    async def serve(
        self,
        events: trio.MemorySendChannel[InboundEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive loop: call ``task_status.started()`` once connected, then push events
        (``await events.send(...)``, which waits when the router is behind) until
        cancelled. Raise to report a lost connection."""
        ...

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        """Send ``delivery`` unless its ``outbound_id`` was already delivered, in which
        case return the first receipt with ``duplicate=True``. Raise
        :class:`DeliveryFailed` when it did not happen."""
        ...


def safe_reason(error: BaseException) -> str:
    """A short, loggable description of ``error`` (see the module docstring)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(safe_reason(inner) for inner in error.exceptions)[:_MAX_REASON_CHARS]
    name = type(error).__name__
    if isinstance(error, ChannelError) and str(error):
        return f"{name}: {error}"[:_MAX_REASON_CHARS]
    return name
