"""The in-process channel: tests use it now, the HTTP API and ``ironctl chat`` later.

A conversation is identified by a string (it becomes ``platform_id``). ``post`` injects a
user message as an :class:`InboundEvent`; ``deliver`` appends the agent's reply. Both land
in the conversation's ordered transcript. Every entry gets an ``index`` that increases by
one per entry within its conversation and is never reused, so a reader can wait for what
comes after a point it has seen, even after old entries were trimmed::

    mark = local.cursor("c1")
    await local.post("c1", "alice", "hello")
    reply = await local.wait_for_reply("c1", after_index=mark)

Bounded memory, by dropping the oldest: each transcript keeps its last
``max_transcript`` entries, and at most ``max_conversations`` conversations are kept; when
a new one would exceed that, the one with the least recent activity (post or delivery) is
forgotten, and anyone waiting on it gets :class:`ConversationEvicted`. Message texts are
capped at ``max_text_chars``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Literal

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.contract.ids import new_message_id
from ironclaw.host.channels.base import (
    ChannelUnavailable,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    InboundRefused,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import DeliveryLedger, IdempotentDelivery, MemoryDeliveryLedger

__all__ = ["ConversationEvicted", "LocalChannel", "TranscriptEntry"]

LOCAL = "local"
DEFAULT_MAX_CONVERSATIONS = 1_000
DEFAULT_MAX_TRANSCRIPT = 1_000
DEFAULT_MAX_TEXT_CHARS = 64 * 1024


@attrs.frozen
class TranscriptEntry:
    role: Literal["user", "agent"]
    sender: str
    text: str
    platform_message_id: str
    at: int  # integer microseconds, UTC
    index: int  # position in the conversation, counting trimmed entries
    thread_id: str | None = None


class ConversationEvicted(LookupError):
    """The conversation was dropped to keep the channel's memory bounded."""


class _Conversation:
    def __init__(self, max_entries: int) -> None:
        self.entries: deque[TranscriptEntry] = deque(maxlen=max_entries)
        self.next_index = 0
        self.evicted = False
        self.changed = trio.lowlevel.ParkingLot()

    def append(self, entry: TranscriptEntry) -> None:
        self.entries.append(entry)
        self.changed.unpark_all()


class LocalChannel:
    """The ``"local"`` channel adapter, holding conversations in memory."""

    def __init__(
        self,
        instance: str = "",
        *,
        agent_sender: str = "agent",
        ledger: DeliveryLedger | None = None,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
        max_transcript: int = DEFAULT_MAX_TRANSCRIPT,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        accept_timeout: float = 30.0,
    ) -> None:
        if min(max_conversations, max_transcript, max_text_chars) < 1:
            raise ValueError("limits must be >= 1")
        self._instance = instance
        self._agent_sender = agent_sender
        self._idempotent = IdempotentDelivery(
            MemoryDeliveryLedger() if ledger is None else ledger
        )
        self._max_conversations = max_conversations
        self._max_transcript = max_transcript
        self._max_text_chars = max_text_chars
        self._accept_timeout = accept_timeout
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self._events: trio.MemorySendChannel[InboundEvent] | None = None

    @property
    def name(self) -> str:
        return LOCAL

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def serving(self) -> bool:
        return self._events is not None

    # -- the adapter protocol ------------------------------------------------------------

    async def serve(
        self,
        events: trio.MemorySendChannel[InboundEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept posts until cancelled; there is no connection to lose."""
        if self._events is not None:
            raise RuntimeError("the local channel is already being served")
        self._events = events
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._events = None

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        if (delivery.channel, delivery.instance) != (LOCAL, self._instance):
            raise DeliveryFailed(
                f"delivery for {delivery.channel}/{delivery.instance} reached the local channel",
                retryable=False,
            )
        if len(delivery.text) > self._max_text_chars:
            raise DeliveryFailed("reply longer than the local channel accepts", retryable=False)
        if not delivery.platform_id:
            raise DeliveryFailed("delivery names no conversation", retryable=False)
        return await self._idempotent.deliver(delivery, self._append_reply)

    async def _append_reply(self, delivery: OutboundDelivery) -> str:
        await trio.lowlevel.checkpoint()
        conversation = self._touch(delivery.platform_id)
        message_id = new_message_id(LOCAL)
        conversation.append(
            self._entry(
                conversation,
                "agent",
                self._agent_sender,
                delivery.text,
                message_id,
                now_us(),
                delivery.thread_id,
            )
        )
        return message_id

    # -- the user's side -----------------------------------------------------------------

    async def post(
        self,
        conversation: str,
        sender: str,
        text: str,
        *,
        mentioned: bool = True,
        thread_id: str | None = None,
        direct: bool = False,
    ) -> str:
        """Inject a user message; return its platform message id.

        ``direct`` marks the conversation as a one-to-one chat with the bot (where
        owners may decide changes from chat). Waits while the router is behind
        (back-pressure). Raises
        :class:`ChannelUnavailable` when the channel is not being served
        (:class:`InboundRefused` when the session's inbound queue is full), and
        ``ValueError`` for an empty conversation or sender or an oversized text.
        """
        if not conversation or not sender:
            raise ValueError("conversation and sender must be non-empty")
        if len(text) > self._max_text_chars:
            raise ValueError(f"text longer than {self._max_text_chars} characters")
        events = self._events
        if events is None:
            raise ChannelUnavailable("the local channel is not being served")
        state = self._touch(conversation)
        message_id = new_message_id(LOCAL)
        at = now_us()
        # Recorded before sending so the transcript shows the question before any answer.
        entry = self._entry(state, "user", sender, text, message_id, at, thread_id)
        state.append(entry)
        event = InboundEvent(
            channel=LOCAL,
            instance=self._instance,
            platform_id=conversation,
            sender_handle=sender,
            text=text,
            thread_id=thread_id,
            mentioned=mentioned,
            direct=direct,
            platform_message_id=message_id,
            received_at=at,
            accepted=trio.Event(),
        )
        try:
            await events.send(event)
            # Return only once the router has committed it: acknowledged means durable.
            with trio.fail_after(self._accept_timeout):
                assert event.accepted is not None
                await event.accepted.wait()
            if event.refusal:
                raise InboundRefused(event.refusal[0])
        except BaseException as exc:
            # Not accepted (cancelled, or the channel went away): it never happened.
            if entry in state.entries:
                state.entries.remove(entry)
            if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                raise ChannelUnavailable("the local channel stopped serving") from None
            if isinstance(exc, trio.TooSlowError):
                raise ChannelUnavailable("the router did not accept the message in time"
                                         ) from None
            raise
        return message_id

    def transcript(self, conversation: str) -> list[TranscriptEntry]:
        """The retained entries of ``conversation``, oldest first ([] if unknown)."""
        state = self._conversations.get(conversation)
        return [] if state is None else list(state.entries)

    def cursor(self, conversation: str) -> int:
        """The index of the latest entry of ``conversation`` (-1 if none yet)."""
        state = self._conversations.get(conversation)
        return -1 if state is None else state.next_index - 1

    def conversations(self) -> list[str]:
        """Known conversations, least recently active first."""
        return list(self._conversations)

    async def wait_for_reply(self, conversation: str, after_index: int = -1) -> TranscriptEntry:
        """The first agent entry with ``index > after_index``, waiting for it if needed."""
        state = self._touch(conversation)
        while True:
            for entry in state.entries:
                if entry.role == "agent" and entry.index > after_index:
                    await trio.lowlevel.checkpoint()
                    return entry
            if state.evicted:
                raise ConversationEvicted(conversation)
            await state.changed.park()
            if state.evicted:
                raise ConversationEvicted(conversation)

    # -- bookkeeping ---------------------------------------------------------------------

    def _touch(self, conversation: str) -> _Conversation:
        state = self._conversations.get(conversation)
        if state is None:
            state = self._conversations[conversation] = _Conversation(self._max_transcript)
            while len(self._conversations) > self._max_conversations:
                _, oldest = self._conversations.popitem(last=False)
                oldest.evicted = True
                oldest.changed.unpark_all()
        else:
            self._conversations.move_to_end(conversation)
        return state

    @staticmethod
    def _entry(
        state: _Conversation,
        role: Literal["user", "agent"],
        sender: str,
        text: str,
        message_id: str,
        at: int,
        thread_id: str | None,
    ) -> TranscriptEntry:
        index = state.next_index
        state.next_index += 1
        return TranscriptEntry(role, sender, text, message_id, at, index, thread_id)
