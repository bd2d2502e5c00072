"""The agent's two queue handles, made safe to use from Trio.

SQLCipher calls block (a fenced commit is about a millisecond, a snapshot read a bit
less, but under gVisor either can stall), so every one runs on a worker thread. One
limiter of one thread serialises them: the agent's queue work happens in program order,
and the writer's connection is only ever touched by one thread at a time. The calls
are not abandoned on cancellation: a commit that has started finishes (it is atomic
anyway), and only then does shutdown proceed.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import AckStatus
from ironclaw.contract.ids import MessageId
from ironclaw.contract.layout import INBOUND_DB, OUTBOUND_DB
from ironclaw.contract.queue import InboundReader, OutboundBatch, OutboundWriter
from ironclaw.contract.rows import Destination, InboundMessage

T = TypeVar("T")

PAGE_SIZE = 256
# A pass looks at no more than this many rows; the rest wait for the next pass.
MAX_ROWS_PER_PASS = 4096


@attrs.frozen
class PendingView:
    """Everything unfinished in inbound, as one pass sees it."""

    messages: list[InboundMessage]
    # Rows the host wrote that failed validation but whose id was readable: the agent
    # fails them explicitly so they do not sit in the queue forever.
    rejected_ids: list[MessageId]
    destinations: list[Destination]
    outbound_handled_through: int
    live_ids: frozenset[MessageId] | None
    # The agent's own acks of those rows (and of the rejected ones), read in the same
    # worker-thread call: a pass costs one hop to the queue thread, not two.
    statuses: dict[MessageId, AckStatus] = attrs.Factory(dict)


class AgentQueues:
    def __init__(self, reader: InboundReader, writer: OutboundWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def pending(self, *, with_live_ids: bool = False) -> PendingView:
        return await self._run(functools.partial(self._read_pending, with_live_ids))

    def _read_pending(self, with_live_ids: bool) -> PendingView:
        first = self._reader.poll(after_seq=0, limit=PAGE_SIZE, with_live_ids=with_live_ids)
        messages = list(first.messages)
        rejections = [r for r in first.rejections if r.table == "messages_in"]
        page_rows = len(first.messages) + len(rejections)
        while page_rows == PAGE_SIZE and len(messages) < MAX_ROWS_PER_PASS:
            seqs = [m.seq for m in messages] + [r.seq for r in rejections if r.seq]
            page = self._reader.poll(after_seq=max(seqs), limit=PAGE_SIZE)
            page_rejections = [r for r in page.rejections if r.table == "messages_in"]
            messages.extend(page.messages)
            rejections.extend(page_rejections)
            page_rows = len(page.messages) + len(page_rejections)
        rejected_ids = [MessageId(r.row_id) for r in rejections if r.row_id]
        statuses = (self._writer.ack_statuses([*(m.id for m in messages), *rejected_ids])
                    if messages or rejected_ids else {})
        return PendingView(
            messages=messages, rejected_ids=rejected_ids, destinations=first.destinations,
            outbound_handled_through=first.outbound_handled_through,
            live_ids=first.live_ids, statuses=statuses)

    async def commit(self, write: Callable[[OutboundBatch], None]) -> None:
        """Run ``write`` inside one outbound transaction: all of it commits or none."""
        def run() -> None:
            with self._writer.batch() as batch:
                write(batch)

        await self._run(run)

    async def get_state(self, key: str) -> str | None:
        return await self._run(functools.partial(self._writer.get_state, key))

    async def prune(self, *, handled_through: int, sent_before: int,
                    live_inbound_ids: frozenset[MessageId]) -> int:
        return await self._run(functools.partial(
            self._writer.prune, handled_through=handled_through, sent_before=sent_before,
            live_inbound_ids=live_inbound_ids))


@asynccontextmanager
async def open_agent_queues(*, inbound_dir: Path, outbound_dir: Path, keys: SessionKeys,
                            scratch_dir: Path) -> AsyncIterator[AgentQueues]:
    """Open (creating if need be) the outbound file and bind the inbound reader. The
    inbound file may not exist yet; reads report that until the host creates it."""
    writer = await trio.to_thread.run_sync(functools.partial(
        OutboundWriter, outbound_dir / OUTBOUND_DB, keys.outbound))
    try:
        reader = InboundReader(inbound_dir / INBOUND_DB, keys.inbound, scratch_dir=scratch_dir)
        yield AgentQueues(reader, writer)
    finally:
        writer.close()
