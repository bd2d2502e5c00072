"""The host's handle on every session's inbound queue.

Router, delivery and sweeper all enqueue through one ``SessionQueues`` so that each
session's inbound file has one writer object in this process. The fence serialises
writers anyway; one object also keeps one connection per file. Opening and writing
block on SQLite, so they run on worker threads.

Every writer it opens carries the per-session byte cap (``DiskCaps.inbound_bytes``).
A hostile agent drives what the host writes into inbound (tasks it schedules,
messages it sends other agents, chats it provokes), so the cap bounds the host's own
writes: a row that does not fit raises ``QueueFull`` for that session alone, and
:meth:`SessionQueues.inbound_full` reports it as a rate-limited ``session.inbound_full``
event.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

import trio

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import MessageId
from ironclaw.contract.layout import QueuePaths, SessionLayout
from ironclaw.contract.queue import InboundWriter, QueueFull
from ironclaw.contract.rows import InboundMessage, NewInboundMessage
from ironclaw.host.events import InboundFull
from ironclaw.runtime import DiscardEvents, EventSink

# At most one session.inbound_full event per session per this many seconds.
INBOUND_FULL_REPORT_EVERY_S = 60.0


class SessionGone(LookupError):
    """The session was deleted: its queue is gone and is never opened again (its id
    is random and never reused, so nothing legitimate asks for it any more)."""


class SessionSecrets(Protocol):
    """What the key store offers: a 64-byte secret per session, created on demand."""

    def ensure_session(self, session_id: str, length: int = 64) -> bytes: ...


class InboundSink(Protocol):
    async def enqueue(self, session_id: str, messages: Sequence[NewInboundMessage]
                      ) -> list[InboundMessage]: ...

    async def holds(self, session_id: str, message_id: str) -> bool:
        """Whether the session's inbound file has a row with this id."""
        ...


class SessionQueues:
    def __init__(self, state_dir: Path, secrets: SessionSecrets, *, max_open: int = 256,
                 max_inbound_bytes: int | None = None, events: EventSink | None = None
                 ) -> None:
        self._state_dir = state_dir
        self._secrets = secrets
        self._max_open = max_open
        self._max_inbound_bytes = max_inbound_bytes or None
        self._events = events or DiscardEvents()
        self._writers: OrderedDict[str, InboundWriter] = OrderedDict()
        self._opening = trio.Lock()
        # session id -> (when last reported, rows refused since)
        self._full_reports: dict[str, tuple[float, int]] = {}
        # Deleted sessions: a router, task or answer that looked the session up just
        # before it went must not bring its files or its key back to life.
        self._deleted: set[str] = set()

    def keys(self, session_id: str) -> SessionKeys:
        self._refuse_deleted(session_id)
        return SessionKeys.from_secret(self._secrets.ensure_session(session_id))

    def _refuse_deleted(self, session_id: str) -> None:
        if session_id in self._deleted:
            raise SessionGone(f"session {session_id} was deleted")

    async def forget(self, session_id: str) -> None:
        """From now on, refuse the session's queue and key (:class:`SessionGone`),
        and close its writer, so its files can be removed."""
        async with self._opening:
            self._deleted.add(session_id)
            writer = self._writers.pop(session_id, None)
            self._full_reports.pop(session_id, None)
        if writer is not None:
            await trio.to_thread.run_sync(writer.close)

    @contextlib.asynccontextmanager
    async def writer_closed(self, session_id: str) -> AsyncIterator[None]:
        """Close the session's inbound writer and open none for it inside the block
        (its file is being replaced: a key rotation). Opening any session's writer
        waits meanwhile, which the block keeps short."""
        async with self._opening:
            writer = self._writers.pop(session_id, None)
            if writer is not None:
                await trio.to_thread.run_sync(writer.close)
            yield

    def paths(self, session_id: str) -> QueuePaths:
        return SessionLayout.under(self._state_dir, session_id).queues

    def _open(self, session_id: str) -> InboundWriter:
        queues = SessionLayout.under(self._state_dir, session_id).create()
        return InboundWriter(queues.inbound_db, self.keys(session_id).inbound,
                             max_bytes=self._max_inbound_bytes)

    async def inbound(self, session_id: str) -> InboundWriter:
        async with self._opening:
            self._refuse_deleted(session_id)
            writer = self._writers.get(session_id)
            if writer is None:
                writer = await trio.to_thread.run_sync(self._open, session_id)
                self._writers[session_id] = writer
                while len(self._writers) > self._max_open:
                    _, evicted = self._writers.popitem(last=False)
                    await trio.to_thread.run_sync(evicted.close)
            else:
                self._writers.move_to_end(session_id)
            return writer

    async def enqueue(self, session_id: str, messages: Sequence[NewInboundMessage]
                      ) -> list[InboundMessage]:
        writer = await self.inbound(session_id)
        try:
            return await trio.to_thread.run_sync(writer.enqueue_many, list(messages))
        except QueueFull as full:
            self.inbound_full(session_id, full)
            raise

    def inbound_full(self, session_id: str, error: QueueFull) -> None:
        """Report a refused write; publishes at most once per session per
        ``INBOUND_FULL_REPORT_EVERY_S``, so a flood cannot flood the event stream."""
        now = trio.current_time()
        last, refused = self._full_reports.get(session_id, (None, 0))
        refused += 1
        if last is not None and now - last < INBOUND_FULL_REPORT_EVERY_S:
            self._full_reports[session_id] = (last, refused)
            return
        if len(self._full_reports) > 4096:  # forget sessions quiet for a whole period
            self._full_reports = {
                s: seen for s, seen in self._full_reports.items()
                if now - seen[0] < INBOUND_FULL_REPORT_EVERY_S}
        self._full_reports[session_id] = (now, 0)
        self._events.publish(InboundFull(session_id, error.used_bytes, error.cap_bytes,
                                         refused))

    async def holds(self, session_id: str, message_id: str) -> bool:
        writer = await self.inbound(session_id)
        found = await trio.to_thread.run_sync(writer.statuses, [MessageId(message_id)])
        return bool(found)

    async def aclose(self) -> None:
        writers, self._writers = list(self._writers.values()), OrderedDict()
        for writer in writers:
            await trio.to_thread.run_sync(writer.close)
