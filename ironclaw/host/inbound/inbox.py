"""Writing one host-minted row into a session's inbound queue, exactly once, and waking it.

Scheduler, questions and agent-to-agent delivery all feed sessions. Each mints a
*deterministic* message id from what caused the row (a task's slot, a question's id, an
outbound row's key), so a retry after a crash finds the row already there and writes
nothing twice: :meth:`SessionInbox.put` checks the id and enqueues in one worker-thread
call. The inbound writer is the one ``SessionQueues`` holds for the session (one writer
object per file in this process); this module composes it, it does not replace it.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ironclaw.contract.queue import InboundWriter, QueueFull, QueueWriteRefused
from ironclaw.contract.rows import MAX_CONTENT_BYTES, NewInboundMessage
from ironclaw.host.inbound.wakes import WakeSink

__all__ = ["InboundQueues", "SessionInbox", "cap_content"]


class InboundQueues(Protocol):
    """What :class:`ironclaw.host.inbound.queues.SessionQueues` offers: the session's writer."""

    async def inbound(self, session_id: str) -> InboundWriter: ...

    def inbound_full(self, session_id: str, error: QueueFull) -> None:
        """Report that ``session_id``'s inbound refused a row for size."""
        ...


def cap_content(text: str, max_bytes: int = MAX_CONTENT_BYTES) -> str:
    """``text`` cut on a character boundary to fit an inbound row."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def _enqueue_once(writer: InboundWriter, message: NewInboundMessage) -> bool:
    if writer.statuses([message.id]):
        return False
    writer.enqueue_many([message])
    return True


class SessionInbox:
    def __init__(self, queues: InboundQueues, wakes: WakeSink) -> None:
        self._queues = queues
        self._wakes = wakes

    async def put(self, session_id: str, message: NewInboundMessage, *,
                  wake_reason: str) -> bool:
        """Enqueue ``message`` unless a row with its id exists; wake the session if the
        row engages (also when it already existed: a crash may have come between the
        write and the wake, and a spare wake is harmless). True if newly written.
        Raises QueueFull, after reporting it, when the session's inbound is at its cap:
        nothing was written, and the caller settles what caused the row."""
        try:
            written = await self._write(session_id, message)
        except QueueFull as full:
            self._queues.inbound_full(session_id, full)
            raise
        if message.engages:
            await self._wakes.wake(session_id, wake_reason)
        return written

    async def _write(self, session_id: str, message: NewInboundMessage) -> bool:
        try:
            writer = await self._queues.inbound(session_id)
            return await trio.to_thread.run_sync(_enqueue_once, writer, message)
        except QueueFull:
            raise
        except QueueWriteRefused:
            # The writer may have been closed under us (the queues' LRU evicted it):
            # fetch it again once. A refusal of the row itself repeats and propagates.
            writer = await self._queues.inbound(session_id)
            return await trio.to_thread.run_sync(_enqueue_once, writer, message)

    async def writer(self, session_id: str) -> InboundWriter:
        return await self._queues.inbound(session_id)
