"""Handling one outbound row: decide, act, record, report. The session worker decides
*when* (in line, held, retried); this module decides *what*.

Each call returns :class:`Settled` (the outcome is recorded in ``delivery_records`` and
its event published: nothing more will happen to the row) or :class:`Retry` (a
transient failure; the worker tries again later and dead-letters after the last
attempt). Handling is idempotent per delivery key, so a retry or a restart re-runs it
safely: channel adapters are idempotent by the key (their ledger is
:class:`~.records.DeliveryRecords`, the same table), and every other effect has an id
derived from the key.
"""

from __future__ import annotations

import logging
from typing import Protocol

import attrs

from ironclaw.contract.enums import MessageKind
from ironclaw.contract.queue import QueueFull
from ironclaw.contract.rows import OutboundMessage, RowRejection
from ironclaw.host.attachments import AttachmentRefused, OutboundFile
from ironclaw.host.channels.base import (
    ChannelUnavailable,
    DeliveryFailed,
    DeliveryReceipt,
    OutboundDelivery,
    safe_reason,
)
from ironclaw.host.questions import render_question
from ironclaw.host.registry import InboundOrigin
from ironclaw.runtime import EventSink, WallClock

from .a2a import AgentRelay, Relayed
from .actions import ActionDispatcher, Asked, FileRequested, Handled, Refused
from .events import (
    ActionHandled,
    AgentMessageSent,
    DeadLettered,
    Delivered,
    DeliveryDenied,
    DeliveryRejected,
    public_reason,
)
from .records import DeliveryRecords, RecordStatus, delivery_key
from .targets import AgentTarget, ChannelTarget, Denied, SessionContext, resolve_target
from .targets import origin_target as origin_of

__all__ = ["ChannelSender", "Retry", "RowHandler", "Settled"]

logger = logging.getLogger(__name__)


class ChannelSender(Protocol):
    """What :class:`ironclaw.host.channels.Channels` offers delivery."""

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt: ...


class FileReader(Protocol):
    """What :class:`ironclaw.host.attachments.WorkspaceFiles` offers: a workspace file,
    or AttachmentRefused."""

    async def read(self, agent_group_id: str, relative: str) -> OutboundFile: ...


class InboundOrigins(Protocol):
    """What the registry offers: its record of where an inbound row came from."""

    async def origin_of(self, session_id: str, message_id: str) -> InboundOrigin | None: ...


@attrs.frozen
class Settled:
    status: RecordStatus


@attrs.frozen
class Retry:
    reason: str
    retry_after: float | None = None


Outcome = Settled | Retry


class RowHandler:
    def __init__(self, *, channels: ChannelSender, origins: InboundOrigins,
                 records: DeliveryRecords, relay: AgentRelay, actions: ActionDispatcher,
                 events: EventSink, clock: WallClock, files: FileReader | None = None
                 ) -> None:
        self._channels = channels
        self._origins = origins
        self._files = files
        self._records = records
        self._relay = relay
        self._actions = actions
        self._events = events
        self._clock = clock

    async def handle(self, session_id: str, row: OutboundMessage,
                     context: SessionContext | None, attempt: int) -> Outcome:
        if context is None:
            return Retry("the session's registry entry could not be read")
        key = delivery_key(session_id, row.id)
        if row.kind is MessageKind.CHAT:
            answered = None
            if row.in_reply_to is not None:
                answered = await self._origins.origin_of(session_id, row.in_reply_to)
            target = resolve_target(row, context, answered)
            if isinstance(target, Denied):
                return await self._deny(session_id, key, row, target.reason)
            if isinstance(target, AgentTarget):
                return await self._to_agent(context, key, row, target, attempt)
            return await self._send(session_id, key, row, target, row.content, attempt)
        if row.kind is MessageKind.SYSTEM:
            return await self._system(context, key, row, attempt)
        return await self.reject(session_id, key, row, f"{row.kind.value} rows are not "
                                 "accepted from a sandbox")

    # -- chat ---------------------------------------------------------------------------

    async def _send(self, session_id: str, key: str, row: OutboundMessage,
                    target: ChannelTarget, text: str, attempt: int,
                    file: OutboundFile | None = None) -> Outcome:
        delivery = OutboundDelivery(outbound_id=key, channel=target.channel,
                                    instance=target.instance, platform_id=target.platform_id,
                                    thread_id=target.thread_id, text=text, file=file,
                                    in_reply_to=target.in_reply_to)
        try:
            receipt = await self._channels.deliver(delivery)
        except DeliveryFailed as exc:
            if exc.retryable:
                return Retry(safe_reason(exc), exc.retry_after)
            return await self.dead_letter(session_id, row, attempt, safe_reason(exc))
        except ChannelUnavailable as exc:
            return Retry(safe_reason(exc))
        try:
            await self._records.finish(key, session_id, RecordStatus.DELIVERED,
                                       at=self._clock.now_us(), attempts=attempt,
                                       detail=receipt.platform_message_id)
        except Exception as exc:
            # The message is out (and the adapter's receipt most likely recorded): a
            # retry on this error would risk sending it twice.
            logger.warning("delivered %s but could not record it: %s", key,
                           safe_reason(exc))
        self._events.publish(Delivered(session_id, row.id, row.seq, target.channel, attempt,
                                       receipt.duplicate))
        return Settled(RecordStatus.DELIVERED)

    async def _to_agent(self, context: SessionContext, key: str, row: OutboundMessage,
                        target: AgentTarget, attempt: int) -> Outcome:
        session_id = context.session_id
        try:
            sent = await self._relay.relay(session_id=session_id,
                                           sender_group_id=context.agent_group_id,
                                           key=key, row=row, target=target)
        except QueueFull:
            # The target's inbound is at its cap: a permanent failure for this row
            # (retrying would only press on a full queue), settled at once.
            return await self.dead_letter(session_id, row, attempt,
                                          "the target session's inbound is full")
        if isinstance(sent, Denied):
            return await self._deny(session_id, key, row, sent.reason)
        assert isinstance(sent, Relayed)
        await self._records.finish(key, session_id, RecordStatus.DELIVERED,
                                   at=self._clock.now_us(), detail=sent.inbound_id)
        self._events.publish(AgentMessageSent(session_id, row.id, row.seq,
                                              target.agent_group_id,
                                              sent.target_session_id, sent.hops))
        return Settled(RecordStatus.DELIVERED)

    # -- system -------------------------------------------------------------------------

    async def _system(self, context: SessionContext, key: str, row: OutboundMessage,
                      attempt: int) -> Outcome:
        session_id = context.session_id
        result = await self._actions.dispatch(session_id=session_id,
                                              agent_group_id=context.agent_group_id,
                                              key=key, row=row)
        if isinstance(result, Refused):
            return await self.reject(session_id, key, row, result.reason)
        if isinstance(result, FileRequested):
            return await self._send_file(context, key, row, result, attempt)
        if isinstance(result, Handled):
            await self._records.finish(key, session_id, RecordStatus.HANDLED,
                                       at=self._clock.now_us(), detail=result.result_id)
            self._events.publish(ActionHandled(session_id, row.id, row.seq, result.action,
                                               result.result_id))
            return Settled(RecordStatus.HANDLED)
        assert isinstance(result, Asked)
        target = origin_of(context)
        if isinstance(target, Denied):
            return await self._deny(session_id, key, row, target.reason)
        assert isinstance(target, ChannelTarget)
        outcome = await self._send(session_id, key, row, target,
                                   render_question(result.question), attempt)
        if outcome == Settled(RecordStatus.DELIVERED):
            self._events.publish(ActionHandled(session_id, row.id, row.seq,
                                               "ask_user_question", result.question.id))
        return outcome

    async def _send_file(self, context: SessionContext, key: str, row: OutboundMessage,
                         result: FileRequested, attempt: int) -> Outcome:
        """Where a chat row would go, the file goes; read afresh on every attempt (the
        bytes are the workspace's, not held between retries)."""
        session_id = context.session_id
        target = resolve_target(row, context)
        if isinstance(target, Denied):
            return await self._deny(session_id, key, row, target.reason)
        if isinstance(target, AgentTarget):
            return await self.reject(session_id, key, row,
                                     "files go to chats, not to other agents")
        if self._files is None:
            return await self.reject(session_id, key, row, "this control plane sends no files")
        try:
            file = await self._files.read(context.agent_group_id, result.request.path)
        except AttachmentRefused as exc:
            return await self.reject(session_id, key, row, f"send_file: {exc}")
        return await self._send(session_id, key, row, target, result.request.caption or "",
                                attempt, file)

    # -- final outcomes -----------------------------------------------------------------

    async def _deny(self, session_id: str, key: str, row: OutboundMessage,
                    reason: str) -> Outcome:
        await self._records.finish(key, session_id, RecordStatus.DENIED,
                                   at=self._clock.now_us(), error=reason)
        self._events.publish(DeliveryDenied(session_id, row.id, row.seq, reason))
        return Settled(RecordStatus.DENIED)

    async def reject(self, session_id: str, key: str, row: OutboundMessage,
                     reason: str) -> Outcome:
        await self._records.finish(key, session_id, RecordStatus.REJECTED,
                                   at=self._clock.now_us(), error=reason)
        self._events.publish(DeliveryRejected(session_id, row.id, row.seq, reason))
        return Settled(RecordStatus.REJECTED)

    async def dead_letter(self, session_id: str, row: OutboundMessage, attempts: int,
                          reason: str) -> Outcome:
        key = delivery_key(session_id, row.id)
        await self._records.finish(key, session_id, RecordStatus.DEAD,
                                   at=self._clock.now_us(), attempts=attempts, error=reason)
        self._events.publish(DeadLettered(session_id, row.id, row.seq, attempts, reason))
        logger.warning("dead-lettered %s of %s after %d attempt(s)", row.id, session_id,
                       attempts)
        return Settled(RecordStatus.DEAD)

    def rejected_row(self, session_id: str, rejection: RowRejection) -> None:
        """A row the tail could not read: counted handled, reported."""
        self._events.publish(DeliveryRejected(session_id, rejection.row_id, rejection.seq,
                                              public_reason(rejection.reason)))
