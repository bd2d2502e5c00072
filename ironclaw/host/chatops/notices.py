"""Pairing notices: what an unknown sender is told about their access request.

The router calls :meth:`ChatNotices.access_requested` once per *new* request (a
repeated message from a sender whose request is pending raises nothing, so it is told
nothing: one notice per request). The gateway calls :meth:`ChatNotices.change_resolved`
(it is a gateway ``Notifier``) when the request's ``access`` change is applied, rejected
or expires. Each notice is a fixed text (never an echo of what the sender wrote), sent
straight through the channel layer to the chat and thread the request came from, not
through an agent session.

Durable: a notice is a row in host.db's ``chat_notices`` first, then a delivery. The
outbound id is derived from the request and the notice kind, so a resend after a crash
is dropped by the adapter's delivery ledger. A channel that is down, or not configured
right now, is retried with backoff (honouring a platform's retry-after) until
``max_age``; only then is the notice given up, logged and audited. On start, decisions
the control plane made but did not get to queue a notice for (it stopped in between)
are found and queued.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Protocol

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import ChangeKind, ChangeStatus
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest
from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.host.channels.base import (
    ChannelUnavailable,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
    safe_reason,
)
from ironclaw.host.gateway import AuditSink
from ironclaw.host.gateway.messages import access_change_id
from ironclaw.host.registry import AccessRequest
from ironclaw.host.store import HostStore
from ironclaw.runtime import DiscardEvents, EventSink

from . import store as q
from .store import Notice, NoticeKind, NoticeStatus

log = logging.getLogger(__name__)

TEXTS: dict[NoticeKind, str] = {
    NoticeKind.REQUESTED: "Access requested. An owner must approve it before your messages "
                          "reach the agent here. You will be told when it is granted.",
    NoticeKind.GRANTED: "Access granted. Send your message again: it will now reach the "
                        "agent.",
    NoticeKind.DENIED: "Access was not granted.",
    NoticeKind.EXPIRED: "Your access request expired without a decision. Write again to "
                        "ask again.",
}
_OUTCOMES = {ChangeStatus.APPLIED: NoticeKind.GRANTED, ChangeStatus.REJECTED: NoticeKind.DENIED,
             ChangeStatus.EXPIRED: NoticeKind.EXPIRED}
BATCH = 50


class ChannelSender(Protocol):
    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt: ...


@attrs.frozen
class NoticePolicy:
    initial_s: float = 2.0  # first retry delay, doubling
    cap_s: float = 300.0
    max_age_s: float = 7 * 24 * 3600.0  # then give up (logged and audited)
    deliver_timeout_s: float = 60.0
    max_nap_s: float = 30.0  # re-check at least this often (the wall clock can jump)

    def delay_s(self, attempts: int, retry_after: float | None) -> float:
        backoff = min(self.cap_s, self.initial_s * 2.0 ** max(0, attempts - 1))
        return float(max(backoff, min(retry_after or 0.0, self.cap_s * 4)))


@attrs.frozen
class NoticeSent:
    type: ClassVar[str] = "chat.notice_sent"
    notice_id: str
    request_id: str
    kind: str
    channel: str


@attrs.frozen
class NoticeFailed:
    type: ClassVar[str] = "chat.notice_failed"
    notice_id: str
    request_id: str
    kind: str
    channel: str
    attempts: int
    final: bool
    reason: str


class ChatNotices:
    """Start with ``nursery.start(notices.run)``. Implements the router's
    ``AccessNotices`` and the gateway's ``Notifier``."""

    def __init__(self, store: HostStore, channels: ChannelSender, *,
                 audit: AuditSink | None = None, events: EventSink | None = None,
                 policy: NoticePolicy | None = None) -> None:
        self._store = store
        self._channels = channels
        self._audit = audit
        self._events = events or DiscardEvents()
        self._policy = policy or NoticePolicy()
        self._wake = trio.Event()

    # The router's hook.

    async def access_requested(self, request: AccessRequest, event: InboundEvent) -> None:
        notice = Notice(id=q.notice_id(request.id, NoticeKind.REQUESTED),
                        request_id=request.id, kind=NoticeKind.REQUESTED,
                        channel=event.channel, instance=event.instance,
                        platform_id=event.platform_id, thread_id=event.thread_id)
        await self._store.transaction(q.raise_requested, notice, now_us())
        self._wake.set()

    # The gateway's Notifier.

    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        kind = _OUTCOMES.get(status)
        request_id = _access_request_of(change)
        if kind is None or request_id is None:
            return
        if await self._store.transaction(q.raise_outcome, request_id, kind, now_us()):
            self._wake.set()

    def wake(self) -> None:
        """Notices were queued in host.db by someone else (the quarantine's owner
        alerts): send them now, not at the next nap's end."""
        self._wake.set()

    # The actor.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        queued = await self._store.transaction(q.reconcile, now_us())
        if queued:
            log.info("queued %d access outcome notice(s) left over from the last run",
                     queued)
        task_status.started()
        while True:
            self._wake = trio.Event()
            due, next_at = await self._store.call(q.due_notices, now_us(), BATCH)
            for notice in due:
                await self._send(notice)
            if due:
                continue  # more may be due: a full batch, or an outcome whose "requested"
                # notice just went out
            nap = self._policy.max_nap_s
            if next_at is not None:
                nap = min(nap, max(0.0, (next_at - now_us()) / 1e6))
            with trio.move_on_after(nap):
                await self._wake.wait()

    async def _send(self, notice: Notice) -> None:
        delivery = OutboundDelivery(
            outbound_id=notice.id, channel=notice.channel, instance=notice.instance,
            platform_id=notice.platform_id, thread_id=notice.thread_id,
            text=notice.text if notice.text is not None else TEXTS[notice.kind])
        attempts = notice.attempts + 1
        retry_after: float | None = None
        final = False
        try:
            with trio.fail_after(self._policy.deliver_timeout_s):
                await self._channels.deliver(delivery)
        except DeliveryFailed as exc:
            reason, retry_after, final = safe_reason(exc), exc.retry_after, not exc.retryable
        except ChannelUnavailable as exc:
            reason = safe_reason(exc)  # not configured or stopped: it may come back
        except trio.TooSlowError:
            reason = "timed out"
        except Exception as exc:  # an adapter bug must not stop every other notice
            reason = safe_reason(exc)
        else:
            await self._store.transaction(q.settle_notice, notice.id, NoticeStatus.SENT,
                                          attempts, notice.next_at, None, now_us())
            self._events.publish(NoticeSent(notice.id, notice.request_id, notice.kind.value,
                                            notice.channel))
            return
        now = now_us()
        if now - notice.created_at > self._policy.max_age_s * 1e6:
            final = True
        status = NoticeStatus.DEAD if final else NoticeStatus.PENDING
        next_at = now + round(self._policy.delay_s(attempts, retry_after) * 1e6)
        await self._store.transaction(q.settle_notice, notice.id, status, attempts, next_at,
                                      reason[:300], now)
        if final:
            log.warning("gave up telling access request %s (%s) on %s after %d attempt(s): %s",
                        notice.request_id, notice.kind.value, notice.channel, attempts,
                        reason)
            if self._audit is not None:
                await self._audit.append("chat.notice_dead", notice_id=notice.id,
                                         request_id=notice.request_id,
                                         kind=notice.kind.value, attempts=attempts)
        else:
            log.info("access notice %s to %s not delivered (attempt %d), retrying: %s",
                     notice.id, notice.channel, attempts, reason)
        self._events.publish(NoticeFailed(notice.id, notice.request_id, notice.kind.value,
                                          notice.channel, attempts, final, reason[:300]))


def _access_request_of(change: ChangeRequest) -> str | None:
    """The access request an ``access`` change was raised for; only the change raised
    for that request (by its deterministic id) names it, so a forged one cannot make
    the control plane tell a stranger something."""
    if change.kind is not ChangeKind.ACCESS:
        return None
    try:
        after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    except JSONRejected:
        return None
    request = after.get("request") if isinstance(after, dict) else None
    if isinstance(request, str) and change.id == access_change_id(request):
        return request
    return None

