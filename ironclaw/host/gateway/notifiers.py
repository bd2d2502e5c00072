"""Telling people how a change ended: the gateway's notifiers (:class:`~.protocols.Notifier`).

``SessionNotifier`` tells a session the outcome of a change it asked for, as a
``system`` inbound row, so the agent learns that a human approved, rejected or let its
request expire. ``Notifiers`` tells several notifiers (the session's, the chat's) as one.
"""

from __future__ import annotations

import logging

from ironclaw.contract.enums import ChangeStatus, MessageKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.ids import validate_message_id
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.host.inbound import SessionInbox

from .protocols import Notifier

__all__ = ["Notifiers", "SessionNotifier"]

logger = logging.getLogger(__name__)

SESSION_PREFIX = "session:"


class SessionNotifier:
    """Implements the gateway's Notifier."""

    def __init__(self, inbox: SessionInbox) -> None:
        self._inbox = inbox

    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        if not change.requested_by.startswith(SESSION_PREFIX):
            return  # an operator or the router asked: no session to tell
        session_id = change.requested_by[len(SESSION_PREFIX):]
        await self._inbox.put(session_id, NewInboundMessage(
            id=validate_message_id(f"chg-{change.id}-{status.value}"), kind=MessageKind.SYSTEM,
            content=(f"Your request {change.id} ({change.kind.value}) was {status.value} "
                     "by the gateway."),
            engages=True), wake_reason="change resolved")


class Notifiers:
    """Several gateway Notifiers as one: each is told in turn, and one that fails does
    not keep the others from hearing (the gateway bounds the whole call in time)."""

    def __init__(self, *notifiers: Notifier) -> None:
        self._notifiers = notifiers

    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        for notifier in self._notifiers:
            try:
                await notifier.change_resolved(change, status)
            except Exception:
                logger.exception("notifier %s failed", type(notifier).__name__)
