"""The router: one inbound chat event in, queued rows and wakes out.

For each wiring of the event's messaging group, highest priority first (ties by
wiring id), in this order: engage evaluation, mention-sticky continuation, the access
gate, the sender-scope gate, then enqueue. Before a row is queued, the registry
records where it came from (chat, thread, platform message id: :func:`origin_of`), so
the reply to it is threaded and correlated from the host's record. An engaged message
is written with ``engages = 1`` and its session is woken; an accumulated one with
``engages = 0`` and no wake; a dropped one is not written and resolves no session. A session whose
inbound queue is at its byte cap takes no row (``inbound_full``, reported by the
queues as ``session.inbound_full``); when that leaves the event with no row committed
anywhere, the event is refused (its ``accepted`` reply fails with
``InboundRefused``), so its channel acknowledges nothing. Rows already committed for
other wirings stand: they are durable.

Unknown senders (no role and no membership for the wiring's agent group) meet the
messaging group's policy: ``strict`` drops them, ``request_approval`` raises one
pending access request that an owner can grant, ``public`` lets them through (where
the wiring's sender scope is ``all``).

Two optional hooks serve chat users directly, never through an agent: ``commands`` sees
every event first and may take it (chat approvals: ``/pending``, ``/approve``, ...; a
taken event reaches no wiring), and ``notices`` is told once per new access request
so the sender hears, in the chat they wrote from, that access was requested.

A message's files (``event.attachments``) are stored into the session's workspace by
``attachments`` (``ironclaw.host.attachments``) once the session is known and before
the row is written; the row's content then ends with the block that names them. The
router waits for the downloads, within the attachment policy's time budget.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Protocol

import attrs
import re2
import trio

from ironclaw.contract.enums import (
    EngageMode,
    IgnoredMessagePolicy,
    MessageKind,
    SenderScope,
    UnknownSenderPolicy,
)
from ironclaw.contract.ids import MessageId, new_message_id, validate_message_id
from ironclaw.contract.queue import QueueFull
from ironclaw.contract.rows import MAX_CONTENT_BYTES, NewInboundMessage
from ironclaw.host.attachments import InboundAttachment, render_attachments
from ironclaw.host.channels.base import InboundEvent, InboundRefused
from ironclaw.host.events import AccessRequested, MessageReceived, MessageRouted
from ironclaw.host.inbound.inbox import cap_content
from ironclaw.host.inbound.queues import InboundSink
from ironclaw.host.inbound.wakes import WakeSink
from ironclaw.host.registry import (
    AccessLevel,
    AccessRequest,
    InboundOrigin,
    MessagingGroup,
    NotFound,
    Registry,
    RegistryError,
    Wiring,
    namespace_user,
)
from ironclaw.runtime import DiscardEvents, EventSink

# Text is cut to this before matching, so a pattern's work is bounded by input size;
# RE2 then guarantees matching in time linear in that size.
MAX_MATCH_CHARS = 64 * 1024
MATCH_ANYTHING = "."
# Events taken from the mailbox and not yet routed, across all chats.
MAX_PENDING_EVENTS = 64


logger = logging.getLogger(__name__)


class AccessGate(Protocol):
    async def submit_access_request(self, request: AccessRequest) -> object: ...


class AccessNotices(Protocol):
    async def access_requested(self, request: AccessRequest, event: InboundEvent) -> None:
        """A new access request was raised by ``event``'s sender (tell them, once)."""
        ...


class CommandInterceptor(Protocol):
    async def intercept(self, event: InboundEvent) -> bool:
        """True when ``event`` is a control-plane command and was taken (it must then
        reach no agent). Must return promptly: the router waits on it."""
        ...


class Decision(enum.StrEnum):
    ENGAGED = "engaged"
    STICKY = "sticky"  # mention-sticky continuation of an existing session
    ACCUMULATED = "accumulated"
    DROPPED = "dropped"
    ACCESS_DENIED = "access_denied"
    ACCESS_REQUESTED = "access_requested"
    SCOPE_DENIED = "scope_denied"
    INBOUND_FULL = "inbound_full"  # the session's inbound queue is at its byte cap


@attrs.frozen
class RouteOutcome:
    wiring_id: str
    agent_group_id: str
    decision: Decision
    session_id: str | None = None
    message_id: str | None = None

    @property
    def engaged(self) -> bool:
        return self.decision in (Decision.ENGAGED, Decision.STICKY)


class PatternCache:
    """Compiled RE2 patterns; an invalid pattern is remembered as never matching."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._compiled: OrderedDict[str, object | None] = OrderedDict()
        self._options = re2.Options()
        self._options.log_errors = False

    def matches(self, pattern: str, text: str) -> bool:
        if pattern == MATCH_ANYTHING:
            return True
        if pattern not in self._compiled:
            try:
                self._compiled[pattern] = re2.compile(pattern, self._options)
            except re2.error:
                self._compiled[pattern] = None
            while len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        compiled = self._compiled[pattern]
        return compiled is not None and compiled.search(text[:MAX_MATCH_CHARS]) is not None  # type: ignore[attr-defined]


def inbound_row_id(event: InboundEvent) -> MessageId:
    """The inbound row's id: derived from the adapter's dedup identity where it has one
    (the same event routed twice is one row, so one answer under one key), random
    otherwise."""
    if event.event_id is None:
        return new_message_id("in")
    key = f"{event.channel}\0{event.instance}\0{event.event_id}"
    return validate_message_id("in_" + hashlib.sha256(key.encode()).hexdigest()[:24])


def origin_of(event: InboundEvent) -> InboundOrigin:
    """What the host remembers of ``event`` for the reply to its row."""
    return InboundOrigin(event.channel, event.instance, event.platform_id, event.thread_id,
                         event.platform_message_id)


def _answer(event: InboundEvent, *, refusal: str | None) -> None:
    """Tell the channel that handed ``event`` over whether anything of it is durable."""
    if event.accepted is None:
        return
    if refusal is None:
        event.accepted.ok(None)
    else:
        event.accepted.fail(InboundRefused(refusal))


class AttachmentSink(Protocol):
    """What :class:`ironclaw.host.attachments.AttachmentInbox` offers the router."""

    async def receive(self, session_id: str, agent_group_id: str, message_id: str,
                      attachments: Sequence[InboundAttachment]) -> str: ...


def _with_attachments(text: str, block: str) -> str:
    if not block:
        return cap_content(text)
    room = MAX_CONTENT_BYTES - len(block.encode()) - 2
    return f"{cap_content(text, room)}\n\n{block}" if text.strip() else block


class Router:
    def __init__(self, registry: Registry, queues: InboundSink,
                 wakes: WakeSink, events: EventSink | None = None,
                 access_gate: AccessGate | None = None, notices: AccessNotices | None = None,
                 commands: CommandInterceptor | None = None,
                 attachments: AttachmentSink | None = None) -> None:
        self._registry = registry
        self._attachments = attachments
        self._access_gate = access_gate
        self._notices = notices
        self._commands = commands
        self._queues = queues
        self._wakes = wakes
        self._events = events or DiscardEvents()
        self._patterns = PatternCache()

    async def run(self, inbox: trio.MemoryReceiveChannel[InboundEvent], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the router mailbox until it closes or we are cancelled. One chat's
        events route one at a time, in arrival order (its rows keep their order);
        different chats' events route side by side, so one chat's slow commit delays
        no other. At most ``MAX_PENDING_EVENTS`` are taken and not yet routed: past
        that, the mailbox fills and back-pressure reaches the channels as before."""
        pending = trio.Semaphore(MAX_PENDING_EVENTS)
        chats: dict[tuple[str, str, str], deque[InboundEvent]] = {}
        async with trio.open_nursery() as nursery:
            task_status.started()
            async with inbox:
                async for event in inbox:
                    await pending.acquire()
                    key = (event.channel, event.instance, event.platform_id)
                    queue = chats.get(key)
                    if queue is not None:
                        queue.append(event)
                    else:
                        chats[key] = deque([event])
                        nursery.start_soon(self._serve_chat, key, chats, pending)

    async def _serve_chat(self, key: tuple[str, str, str],
                          chats: dict[tuple[str, str, str], deque[InboundEvent]],
                          pending: trio.Semaphore) -> None:
        queue = chats[key]
        try:
            while queue:  # no checkpoint between the last check and forgetting the chat
                try:
                    await self.route(queue[0])
                finally:
                    queue.popleft()
                    pending.release()
        finally:
            del chats[key]

    async def route(self, event: InboundEvent) -> list[RouteOutcome]:
        if self._commands is not None and await self._commands.intercept(event):
            _answer(event, refusal=None)
            return []
        group, wirings = await self._registry.group_with_wirings(
            event.channel, event.platform_id, event.instance)
        user = namespace_user(event.channel, event.sender_handle)
        self._events.publish(MessageReceived(event.channel, group.id, user,
                                             len(event.text.encode("utf-8", "replace"))))
        outcomes = []
        for wiring in wirings:
            outcome = await self._route_one(event, group, user, wiring)
            self._events.publish(MessageRouted(group.id, wiring.id, wiring.agent_group_id,
                                               outcome.decision.value, outcome.session_id,
                                               outcome.message_id))
            outcomes.append(outcome)
        full = [o for o in outcomes if o.decision is Decision.INBOUND_FULL]
        refused = bool(full) and not any(o.message_id for o in outcomes)
        _answer(event, refusal="the session's inbound queue is full" if refused else None)
        return outcomes

    async def _route_one(self, event: InboundEvent, group: MessagingGroup, user: str,
                         wiring: Wiring) -> RouteOutcome:
        def outcome(decision: Decision, session: str | None = None,
                    message: str | None = None) -> RouteOutcome:
            return RouteOutcome(wiring.id, wiring.agent_group_id, decision, session, message)

        sticky = False
        if wiring.engage_mode is EngageMode.PATTERN:
            engaged = self._patterns.matches(wiring.pattern, event.text)
        else:
            engaged = event.mentioned
            if not engaged and wiring.engage_mode is EngageMode.MENTION_STICKY:
                existing = await self._registry.find_session(
                    wiring.agent_group_id, group.id, event.thread_id, wiring.session_mode)
                engaged = sticky = existing is not None
        if not engaged and wiring.ignored_policy is IgnoredMessagePolicy.DROP:
            return outcome(Decision.DROPPED)

        known = await self._registry.access_level(
            user, wiring.agent_group_id) > AccessLevel.NONE
        if not known:
            policy = group.unknown_sender_policy
            if policy is UnknownSenderPolicy.REQUEST_APPROVAL and engaged:
                request, new = await self._registry.request_access(group.id, user)
                if new:
                    self._events.publish(AccessRequested(request.id, group.id, user))
                    if await self._submit_access(request) and self._notices is not None:
                        await self._notices.access_requested(request, event)
                return outcome(Decision.ACCESS_REQUESTED)
            if policy is not UnknownSenderPolicy.PUBLIC:
                return outcome(Decision.ACCESS_DENIED)
        if wiring.sender_scope is SenderScope.KNOWN and not known:
            return outcome(Decision.SCOPE_DENIED)

        session = await self._registry.resolve_session(
            wiring.agent_group_id, group.id, event.thread_id, wiring.session_mode)
        row_id = inbound_row_id(event)
        try:
            if event.event_id is None or not await self._queues.holds(session.id, row_id):
                # Recorded before the row exists, so a reply to it always finds it.
                await self._registry.record_origin(session.id, row_id, origin_of(event))
                content = _with_attachments(event.text, await self._files(
                    event, session.id, wiring.agent_group_id, row_id))
                (written,) = await self._queues.enqueue(session.id, [NewInboundMessage(
                    id=row_id, kind=MessageKind.CHAT, content=content,
                    engages=engaged, platform_id=event.platform_id,
                    channel_type=event.channel, thread_id=event.thread_id)])
                row_id = written.id
            # else: routed before, and a crash cut the adapter's seen record short. The
            # row is there once; the wake below is harmless.
        except QueueFull:
            return outcome(Decision.INBOUND_FULL, session.id)
        if not engaged:
            return outcome(Decision.ACCUMULATED, session.id, row_id)
        await self._wakes.wake(session.id)
        return outcome(Decision.STICKY if sticky else Decision.ENGAGED, session.id, row_id)

    async def _files(self, event: InboundEvent, session_id: str, agent_group_id: str,
                     row_id: str) -> str:
        if not event.attachments:
            return ""
        if self._attachments is None:
            return render_attachments([(a.declared_name, "this control plane takes no files")
                                       for a in event.attachments])
        return await self._attachments.receive(session_id, agent_group_id, row_id,
                                               event.attachments)

    async def _submit_access(self, request: AccessRequest) -> bool:
        """Hand a new access request to the gateway, where an owner grants it like any
        other change. If the gateway refuses it (its quota of pending router requests
        is full, or it is stopping), the request is closed again, so the sender's next
        message asks anew instead of waiting on a request no owner can see; and a
        stranger's message can never stop the router."""
        if self._access_gate is None:
            return True
        try:
            await self._access_gate.submit_access_request(request)
        except Exception as exc:
            logger.warning("access request %s not submitted to the gateway: %s",
                           request.id, type(exc).__name__)
            with contextlib.suppress(RegistryError, NotFound):  # decided meanwhile
                await self._registry.decide_access_request(request.id, grant=False,
                                                           decided_by="system")
            return False
        return True
