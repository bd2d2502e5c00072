"""The in-process channel: the HTTP API, ``ironctl chat`` and tests talk through it.

A conversation is identified by a string (it becomes ``platform_id``). ``post`` injects a
user message as an :class:`InboundEvent`; ``deliver`` appends the agent's reply. Both land
in the conversation's ordered transcript. Every entry gets an ``index`` that increases by
one per entry within its conversation and is never reused, so a reader can wait for what
comes after a point it has seen, even after old entries were trimmed::

    mark = local.cursor("c1")
    await local.post("c1", "alice", "hello")
    reply = await local.wait_for_reply("c1", after_index=mark)

Durable when given a :class:`TranscriptLog` (the control plane passes host.db's): every
entry is written there before anyone can read it, the log numbers it, and the channel
reloads the retained conversations when it starts serving, so a restart loses none of
them. Reads stay synchronous: they are served from a mirror in memory that holds exactly
what the retention keeps. An agent entry is stored with its ``outbound_id``, and a
redelivery of that id finds it instead of adding a second: the local channel delivers
exactly once across crashes. Without a log (unit tests), the transcript lives in memory.

Bounded, by dropping the oldest (:class:`TranscriptRetention`): each transcript keeps its
last ``entries``, at most ``conversations`` conversations are kept (a new one pushes out
the one with the least recent activity, and anyone waiting on it gets
:class:`ConversationEvicted`), and entries older than ``max_age_s`` are pruned when the
channel starts serving and every ``prune_interval_s`` after. Message texts are capped at
``max_text_chars``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Literal, Protocol

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.contract.ids import new_message_id
from ironclaw.host.channels.base import (
    ChannelUnavailable,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import DeliveryLedger, IdempotentDelivery, MemoryDeliveryLedger
from ironclaw.runtime import Reply

__all__ = ["Appended", "ConversationEvicted", "LocalChannel", "TranscriptEntry",
           "TranscriptLog", "TranscriptRetention"]

LOCAL = "local"
DEFAULT_MAX_CONVERSATIONS = 1_000
DEFAULT_MAX_TRANSCRIPT = 1_000
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_PRUNE_INTERVAL_S = 3600.0
DEFAULT_MAX_TEXT_CHARS = 64 * 1024
# A user entry written before the router refused the message is taken back even while
# the poster is being cancelled: give the delete this long.
_TAKE_BACK_GRACE_S = 5.0


@attrs.frozen
class TranscriptEntry:
    role: Literal["user", "agent"]
    sender: str
    text: str
    platform_message_id: str
    at: int  # integer microseconds, UTC
    index: int  # position in the conversation, counting trimmed entries
    thread_id: str | None = None


@attrs.frozen
class TranscriptRetention:
    conversations: int = DEFAULT_MAX_CONVERSATIONS  # per channel instance
    entries: int = DEFAULT_MAX_TRANSCRIPT  # per conversation
    max_age_s: float = DEFAULT_MAX_AGE_S


@attrs.frozen
class Appended:
    entry: TranscriptEntry  # as stored, numbered by the log
    duplicate: bool  # its outbound id was already there: nothing was added
    forgotten: tuple[str, ...]  # conversations dropped to keep the retention bound


class TranscriptLog(Protocol):
    """Where a durable local channel keeps its transcripts (host.db in production)."""

    async def append(self, instance: str, conversation: str, entry: TranscriptEntry, *,
                     outbound_id: str | None, limits: TranscriptRetention) -> Appended: ...

    async def remove(self, instance: str, conversation: str, index: int) -> None: ...

    async def load(self, instance: str, limits: TranscriptRetention
                   ) -> list[tuple[str, list[TranscriptEntry]]]: ...

    async def prune(self, instance: str, older_than: int) -> int: ...


class ConversationEvicted(LookupError):
    """The conversation was dropped to keep the channel's memory bounded."""


class _Conversation:
    def __init__(self, max_entries: int) -> None:
        self.entries: deque[TranscriptEntry] = deque(maxlen=max_entries)
        self.next_index = 0
        self.evicted = False
        self.changed = trio.lowlevel.ParkingLot()

    def add(self, entry: TranscriptEntry) -> None:
        """Keep ``entry`` in index order (concurrent writes may finish out of order)."""
        if self.entries and self.entries[-1].index > entry.index:
            ordered = sorted([*self.entries, entry], key=lambda e: e.index)
            self.entries = deque(ordered, maxlen=self.entries.maxlen)
        else:
            self.entries.append(entry)
        self.next_index = max(self.next_index, entry.index + 1)
        self.changed.unpark_all()

    def discard(self, entry: TranscriptEntry) -> None:
        if entry in self.entries:
            self.entries.remove(entry)

    def forget_before(self, cutoff: int) -> None:
        while self.entries and self.entries[0].at < cutoff:
            self.entries.popleft()


class LocalChannel:
    """The ``"local"`` channel adapter; durable with a :class:`TranscriptLog`."""

    def __init__(
        self,
        instance: str = "",
        *,
        agent_sender: str = "agent",
        ledger: DeliveryLedger | None = None,
        transcripts: TranscriptLog | None = None,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
        max_transcript: int = DEFAULT_MAX_TRANSCRIPT,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        accept_timeout: float = 30.0,
    ) -> None:
        if min(max_conversations, max_transcript, max_text_chars) < 1:
            raise ValueError("limits must be >= 1")
        if min(max_age_s, prune_interval_s) <= 0:
            raise ValueError("max_age_s and prune_interval_s must be > 0")
        self._instance = instance
        self._agent_sender = agent_sender
        self._idempotent = IdempotentDelivery(
            MemoryDeliveryLedger() if ledger is None else ledger
        )
        self._log = transcripts
        self._retention = TranscriptRetention(max_conversations, max_transcript, max_age_s)
        self._prune_interval_s = prune_interval_s
        self._max_text_chars = max_text_chars
        self._accept_timeout = accept_timeout
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self._events: trio.MemorySendChannel[InboundEvent] | None = None
        self._loaded = False

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
        """Reload the durable transcripts (once), then accept posts and prune by age
        until cancelled; there is no connection to lose."""
        if self._events is not None:
            raise RuntimeError("the local channel is already being served")
        await self._load()
        self._events = events
        try:
            task_status.started()
            while True:
                await trio.sleep(self._prune_interval_s)
                await self._prune_by_age()
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
        entry = await self._record(delivery.platform_id, "agent", self._agent_sender,
                                   delivery.text, delivery.thread_id,
                                   outbound_id=delivery.outbound_id)
        return entry.platform_message_id

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
        # Recorded before sending so the transcript shows the question before any answer.
        entry = await self._record(conversation, "user", sender, text, thread_id,
                                   outbound_id=None)
        accepted = Reply[None]()
        event = InboundEvent(
            channel=LOCAL,
            instance=self._instance,
            platform_id=conversation,
            sender_handle=sender,
            text=text,
            thread_id=thread_id,
            mentioned=mentioned,
            direct=direct,
            platform_message_id=entry.platform_message_id,
            received_at=entry.at,
            accepted=accepted,
        )
        try:
            await events.send(event)
            # Return only once the router has committed it: acknowledged means durable.
            # A refusal raises InboundRefused out of the wait.
            with trio.fail_after(self._accept_timeout):
                await accepted.wait()
        except BaseException as exc:
            # Not accepted (cancelled, or the channel went away): it never happened.
            await self._take_back(conversation, entry)
            if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
                raise ChannelUnavailable("the local channel stopped serving") from None
            if isinstance(exc, trio.TooSlowError):
                raise ChannelUnavailable("the router did not accept the message in time"
                                         ) from None
            raise
        return entry.platform_message_id

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

    async def _record(self, conversation: str, role: Literal["user", "agent"], sender: str,
                      text: str, thread_id: str | None, *, outbound_id: str | None
                      ) -> TranscriptEntry:
        """Append an entry: durably first when there is a log, then to the mirror."""
        state = self._touch(conversation)
        entry = TranscriptEntry(role, sender, text, new_message_id(LOCAL), now_us(),
                                state.next_index, thread_id)
        if self._log is None:
            await trio.lowlevel.checkpoint()
            state.next_index += 1
            state.add(entry)
            return entry
        appended = await self._log.append(self._instance, conversation, entry,
                                          outbound_id=outbound_id, limits=self._retention)
        for name in appended.forgotten:
            self._evict(name)
        if not appended.duplicate:
            self._touch(conversation).add(appended.entry)
        return appended.entry

    async def _take_back(self, conversation: str, entry: TranscriptEntry) -> None:
        state = self._conversations.get(conversation)
        if state is not None:
            state.discard(entry)
        if self._log is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(_TAKE_BACK_GRACE_S):
                await self._log.remove(self._instance, conversation, entry.index)

    async def _load(self) -> None:
        if self._log is None or self._loaded:
            return
        await self._prune_by_age()
        for name, entries in await self._log.load(self._instance, self._retention):
            state = self._touch(name)
            for entry in entries:
                state.add(entry)
        self._loaded = True

    async def _prune_by_age(self) -> None:
        cutoff = now_us() - int(self._retention.max_age_s * 1_000_000)
        if self._log is not None:
            await self._log.prune(self._instance, cutoff)
        else:
            await trio.lowlevel.checkpoint()
        for state in self._conversations.values():
            state.forget_before(cutoff)

    def _touch(self, conversation: str) -> _Conversation:
        state = self._conversations.get(conversation)
        if state is None:
            state = self._conversations[conversation] = _Conversation(
                self._retention.entries)
            while len(self._conversations) > self._retention.conversations:
                oldest = next(iter(self._conversations))
                self._evict(oldest)
        else:
            self._conversations.move_to_end(conversation)
        return state

    def _evict(self, conversation: str) -> None:
        state = self._conversations.pop(conversation, None)
        if state is not None:
            state.evicted = True
            state.changed.unpark_all()
