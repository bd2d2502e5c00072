"""Waking a session: the last step on the road in, after its row is written.

:class:`WakeSink` is all the writers of inbound rows (the router, :class:`SessionInbox`
for the scheduler, questions, agent-to-agent delivery and change outcomes) need.
:class:`Waker` implements it over the sessions mailbox. It exists before the sessions
actor does, which breaks the construction cycle: delivery, the scheduler and the
router need to wake sessions, and sessions need delivery.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ironclaw.host.mailboxes import SessionsMessage, Wake

__all__ = ["WakeSink", "Waker"]


class WakeSink(Protocol):
    async def wake(self, session_id: str, reason: str = "message") -> None: ...


class Waker:
    """A :class:`WakeSink` over the sessions mailbox."""

    def __init__(self, mailbox: trio.MemorySendChannel[SessionsMessage]) -> None:
        self._mailbox = mailbox

    async def wake(self, session_id: str, reason: str = "message") -> None:
        await self._mailbox.send(Wake(session_id, reason))
