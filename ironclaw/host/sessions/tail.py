"""The outbound tail: stream a session's committed outbound rows the moment they land.

It waits on inotify for the outbound directory (the writer's fence file changes at
the end of every commit, the heartbeat file on every beat), with a slow safety poll
in case an event is missed. It never sleeps for fixed seconds on the hot path.

Per poll it reads one consistent snapshot, hands new rows to delivery in seq order
(waiting if delivery applies back-pressure to this session), advances inbound status
from new or changed acks (one inbound commit only when something changed), and keeps
what the sweeper needs to tell busy from stuck.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import inotify_simple
import trio

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.enums import AckStatus
from ironclaw.contract.layout import HEARTBEAT_FILE, QueuePaths, read_heartbeat
from ironclaw.contract.queue import OutboundPoll, OutboundReader, QueueBusy, QueueNotReady
from ironclaw.contract.rows import ContainerState, ProcessingAck

from ..mailboxes import OutboundBatch

logger = logging.getLogger(__name__)

_WATCH = (inotify_simple.flags.CLOSE_WRITE | inotify_simple.flags.MODIFY
          | inotify_simple.flags.MOVED_TO | inotify_simple.flags.CREATE)
BATCH_LIMIT = 256


@attrs.define
class TailState:
    cursor: int
    heartbeat_at: int | None = None
    container: ContainerState | None = None
    oldest_claim_at: int | None = None
    rows_seen: int = 0
    busy_polls: int = 0


class OutboundTail:
    def __init__(self, *, session_id: str, agent_group_id: str, queues: QueuePaths,
                 key: RawKey, cursor: int,
                 submit: Callable[[OutboundBatch], Awaitable[None]],
                 apply_acks: Callable[[Sequence[ProcessingAck]], Awaitable[None]],
                 on_activity: Callable[[], None], safety_poll_s: float = 2.0) -> None:
        self._sid = session_id
        self._group = agent_group_id
        self._queues = queues
        self._reader = OutboundReader(queues.outbound_db, key)
        self._submit = submit
        self._apply_acks = apply_acks
        self._on_activity = on_activity
        self._safety_poll_s = safety_poll_s
        self._acked: dict[str, AckStatus] = {}
        self.state = TailState(cursor=cursor)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        notify = inotify_simple.INotify()
        try:
            notify.add_watch(str(self._queues.outbound_dir), _WATCH)
            task_status.started()
            await self.poll()
            while True:
                with trio.move_on_after(self._safety_poll_s):
                    await trio.lowlevel.wait_readable(notify.fileno())
                names = {event.name for event in notify.read(timeout=0)}
                if HEARTBEAT_FILE in names:
                    self.state.heartbeat_at = read_heartbeat(self._queues.heartbeat)
                await self.poll()
        finally:
            notify.close()

    async def poll(self) -> None:
        """Read until caught up: a backlog is drained batch by batch."""
        while True:
            try:
                snapshot: OutboundPoll = await trio.to_thread.run_sync(
                    lambda: self._reader.poll(after_seq=self.state.cursor, limit=BATCH_LIMIT))
            except QueueNotReady:
                return  # the agent has not created its file yet
            except QueueBusy:
                # Only a writer that ignores pacing (or died mid-commit) gets here.
                self.state.busy_polls += 1
                return
            await self._absorb(snapshot)
            if len(snapshot.messages) + len(snapshot.rejections) < BATCH_LIMIT:
                return

    async def _absorb(self, snapshot: OutboundPoll) -> None:
        state = self.state
        state.container = snapshot.container
        if snapshot.container is not None:
            state.heartbeat_at = max(state.heartbeat_at or 0, snapshot.container.heartbeat_at)
        beat = read_heartbeat(self._queues.heartbeat)
        if beat is not None:
            state.heartbeat_at = max(state.heartbeat_at or 0, beat)
        changed = [a for a in snapshot.acks if self._acked.get(a.message_id) != a.status]
        if changed:
            await self._apply_acks(changed)
            for ack in changed:
                self._acked[ack.message_id] = ack.status
            self._on_activity()
        claims = [a.status_changed for a in snapshot.acks if a.status is AckStatus.PROCESSING]
        state.oldest_claim_at = min(claims) if claims else None
        if snapshot.messages or snapshot.rejections:
            await self._submit(OutboundBatch(
                session_id=self._sid, agent_group_id=self._group,
                messages=tuple(snapshot.messages), rejections=tuple(snapshot.rejections),
                cursor=snapshot.cursor))
            state.rows_seen += len(snapshot.messages) + len(snapshot.rejections)
            self._on_activity()
        state.cursor = max(state.cursor, snapshot.cursor)
        if len(self._acked) > 4 * BATCH_LIMIT:
            # Acks of pruned rows disappear from the file; forget them here too.
            live = {a.message_id for a in snapshot.acks}
            for mid in [m for m in self._acked if m not in live]:
                with contextlib.suppress(KeyError):
                    del self._acked[mid]
