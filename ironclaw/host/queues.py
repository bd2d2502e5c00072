"""The host's handle on every session's inbound queue.

Router, delivery and sweeper all enqueue through one ``SessionQueues`` so that each
session's inbound file has one writer object in this process. The fence serialises
writers anyway; one object also keeps one connection per file. Opening and writing
block on SQLite, so they run on worker threads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import trio

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import MessageId
from ironclaw.contract.layout import QueuePaths, SessionLayout
from ironclaw.contract.queue import InboundWriter
from ironclaw.contract.rows import InboundMessage, NewInboundMessage


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
    def __init__(self, state_dir: Path, secrets: SessionSecrets, *, max_open: int = 256
                 ) -> None:
        self._state_dir = state_dir
        self._secrets = secrets
        self._max_open = max_open
        self._writers: OrderedDict[str, InboundWriter] = OrderedDict()
        self._opening = trio.Lock()

    def keys(self, session_id: str) -> SessionKeys:
        return SessionKeys.from_secret(self._secrets.ensure_session(session_id))

    def paths(self, session_id: str) -> QueuePaths:
        return SessionLayout.under(self._state_dir, session_id).queues

    def _open(self, session_id: str) -> InboundWriter:
        queues = SessionLayout.under(self._state_dir, session_id).create()
        return InboundWriter(queues.inbound_db, self.keys(session_id).inbound)

    async def inbound(self, session_id: str) -> InboundWriter:
        async with self._opening:
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
        return await trio.to_thread.run_sync(writer.enqueue_many, list(messages))

    async def holds(self, session_id: str, message_id: str) -> bool:
        writer = await self.inbound(session_id)
        found = await trio.to_thread.run_sync(writer.statuses, [MessageId(message_id)])
        return bool(found)

    async def aclose(self) -> None:
        writers, self._writers = list(self._writers.values()), OrderedDict()
        for writer in writers:
            await trio.to_thread.run_sync(writer.close)
