"""The outbound tail: stream a session's committed outbound rows the moment they land.

It waits on inotify for the outbound directory (the writer's fence file changes at
the end of every commit, the heartbeat file on every beat), with a slow safety poll
in case an event is missed. It never sleeps for fixed seconds on the hot path.

Per poll it reads one consistent snapshot, hands new rows to delivery in seq order
(waiting if delivery applies back-pressure to this session), and keeps what the
sweeper needs to tell busy from stuck. New or changed acks advance inbound status
``ACK_DELAY_S`` later, in one inbound commit with the acks of the polls in between,
and before the tail stops: that status is the host's bookkeeping (pruning, the
recovery scan), never what the agent decides by (it reads its own acks), so a reply
is never held behind it, and one lost to a crash is applied again from the file.

Everything in the outbound directory is the sandbox's, so the host's work on it is
bounded per session, whatever the sandbox does:

* every read (heartbeat, fence, snapshot) goes through the hardened opener
  (``ironclaw.contract.untrusted_files``), on this session's own one-thread limiter,
  under a deadline: a stuck read holds one thread of this session, never the event
  loop and never Trio's shared thread limiter;
* wake-ups are paced (a storm of directory events coalesces into at most
  ``WAKES_PER_S`` a second), a snapshot is copied only when the commit fence moved
  since the last complete read, and copies are paced by a token bucket that charges
  by size (:class:`CopyBudget`), so an inotify storm cannot make the host copy and
  decrypt more than the agent commits, nor more than a fixed rate;
* a file that proves the sandbox hostile (a schema that is not the contract's, a
  symlink, FIFO, device or hard link where a queue file belongs) is reported through
  ``on_hostile`` once, and the tail stops reading it.
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
from ironclaw.contract.layout import QueuePaths, read_heartbeat
from ironclaw.contract.queue import (
    OutboundPoll,
    OutboundReader,
    QueueBusy,
    QueueFileUnsafe,
    QueueNotReady,
    QueueSchemaError,
)
from ironclaw.contract.rows import ContainerState, ProcessingAck
from ironclaw.contract.untrusted_files import run_untrusted
from ironclaw.runtime.ratelimit import TokenBucket

from ..mailboxes import TailBatch

logger = logging.getLogger(__name__)

_WATCH = (inotify_simple.flags.CLOSE_WRITE | inotify_simple.flags.MODIFY
          | inotify_simple.flags.MOVED_TO | inotify_simple.flags.CREATE)
BATCH_LIMIT = 256
# A read of the outbound file (copy, decrypt, query) gets this long before the tail
# stops waiting for it; the snapshot's own retry budget is 5 s of it.
READ_DEADLINE_S = 15.0
# What proves a sandbox hostile: no honest agent produces either.
HOSTILE = (QueueSchemaError, QueueFileUnsafe)
# Wake-ups a second (and banked): each costs a fence read and a heartbeat
# read, so a storm of directory events may not wake the tail faster than this. An
# honest turn is a handful of wake-ups; events that arrive meanwhile coalesce.
WAKES_PER_S = 50.0
WAKE_BURST = 10
# Acks wait this long for the next ones before one inbound commit applies them all.
ACK_DELAY_S = 0.2
# Stopping, the tail gives the last acks this long to be applied.
ACK_FLUSH_GRACE_S = 5.0


@attrs.frozen
class CopyPolicy:
    """How much snapshot copying one session may cause: ``rate`` tokens a second, at
    most ``burst`` banked, and a copy costs one token plus one per started MiB."""

    rate: float = 20.0
    burst: int = 20
    bytes_per_token: int = 1 << 20


class CopyBudget:
    def __init__(self, policy: CopyPolicy) -> None:
        self._policy = policy
        self._bucket = TokenBucket(policy.rate, policy.burst)
        self._owed = 0

    def charge(self, file_bytes: int) -> None:
        """Record a copy; the next :meth:`wait` pays for it."""
        self._owed += 1 + file_bytes // self._policy.bytes_per_token

    async def wait(self) -> None:
        """Sleep until every copy so far is paid for (spending banked tokens first)."""
        while self._owed > 0:
            await self._bucket.acquire()
            self._owed -= 1


@attrs.frozen
class _Read:
    fence: int | None
    snapshot: OutboundPoll | None
    copied_bytes: int
    heartbeat_at: int | None


@attrs.define
class TailState:
    cursor: int
    heartbeat_at: int | None = None
    container: ContainerState | None = None
    oldest_claim_at: int | None = None
    rows_seen: int = 0
    busy_polls: int = 0
    wakes: int = 0  # wake-ups by directory events or the safety poll
    copies: int = 0  # snapshots copied
    skipped_polls: int = 0  # polls answered by an unmoved fence, without a copy
    hostile: str | None = None  # why the outbound file proved the sandbox hostile


class OutboundTail:
    def __init__(self, *, session_id: str, agent_group_id: str, queues: QueuePaths,
                 key: RawKey, cursor: int,
                 submit: Callable[[TailBatch], Awaitable[None]],
                 apply_acks: Callable[[Sequence[ProcessingAck]], Awaitable[None]],
                 on_activity: Callable[[], None], safety_poll_s: float = 2.0,
                 on_hostile: Callable[[str], None] = lambda reason: None,
                 copy_policy: CopyPolicy | None = None,
                 ack_delay_s: float = ACK_DELAY_S) -> None:
        self._sid = session_id
        self._group = agent_group_id
        self._queues = queues
        self._reader = OutboundReader(queues.outbound_db, key)
        self._submit = submit
        self._apply_acks = apply_acks
        self._on_activity = on_activity
        self._on_hostile = on_hostile
        self._safety_poll_s = safety_poll_s
        self._acked: dict[str, AckStatus] = {}
        self._unapplied: dict[str, ProcessingAck] = {}
        self._acks_due = trio.Event()
        self._ack_delay_s = ack_delay_s
        # This session's own thread: its reads never queue behind another session's.
        self._limiter = trio.CapacityLimiter(1)
        self._budget = CopyBudget(copy_policy or CopyPolicy())
        self._wakes = TokenBucket(WAKES_PER_S, WAKE_BURST)
        self._read_fence: int | None = None  # the fence as of the last complete read
        self.state = TailState(cursor=cursor)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        notify = inotify_simple.INotify()
        try:
            notify.add_watch(str(self._queues.outbound_dir), _WATCH)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_acks)
                task_status.started()
                await self.poll()
                while self.state.hostile is None:
                    with trio.move_on_after(self._safety_poll_s):
                        await trio.lowlevel.wait_readable(notify.fileno())
                    await self._wakes.acquire()
                    self.state.wakes += 1
                    # Drained in one go: a storm of events is one wake-up, not many.
                    # Every poll reads the heartbeat too, so which files changed does
                    # not matter.
                    notify.read(timeout=0)
                    await self.poll()
                nursery.cancel_scope.cancel()
        finally:
            notify.close()
            with trio.CancelScope(shield=True), trio.move_on_after(ACK_FLUSH_GRACE_S):
                try:
                    await self._apply_unapplied()
                except Exception as exc:  # the acks stay in the file for the next tail
                    logger.warning("session %s: acks not applied on stopping: %s",
                                   self._sid, type(exc).__name__)

    async def _serve_acks(self) -> None:
        while True:
            await self._acks_due.wait()
            self._acks_due = trio.Event()
            await trio.sleep(self._ack_delay_s)
            await self._apply_unapplied()

    async def _apply_unapplied(self) -> None:
        acks, self._unapplied = list(self._unapplied.values()), {}
        if acks:
            await self._apply_acks(acks)

    async def poll(self) -> None:
        """Read until caught up: a backlog is drained batch by batch."""
        while self.state.hostile is None:
            await self._budget.wait()
            try:
                read = await run_untrusted(self._read_once, limiter=self._limiter,
                                           deadline_s=READ_DEADLINE_S)
            except QueueNotReady:
                return  # the agent has not created its file yet
            except (QueueBusy, trio.TooSlowError):
                # Only a writer that ignores pacing (or died mid-commit) gets here.
                self.state.busy_polls += 1
                return
            except HOSTILE as exc:
                self.state.hostile = f"{type(exc).__name__}: {exc}"[:300]
                logger.critical("session %s: its outbound file proves it hostile: %s",
                                self._sid, self.state.hostile)
                self._on_hostile(self.state.hostile)
                return
            self._absorb_heartbeat(read.heartbeat_at)
            if read.snapshot is None:
                self.state.skipped_polls += 1
                return
            self.state.copies += 1
            self._budget.charge(read.copied_bytes)
            await self._absorb(read.snapshot)
            if len(read.snapshot.messages) + len(read.snapshot.rejections) < BATCH_LIMIT:
                self._read_fence = read.fence
                return

    def _read_once(self) -> _Read:
        """On this session's thread (so it touches no tail state): the heartbeat, the
        fence as read before the copy, and the snapshot unless nothing was committed
        since the last complete read."""
        beat = read_heartbeat(self._queues.heartbeat)
        fence = self._reader.fence()
        if fence is not None and fence == self._read_fence:
            return _Read(fence, None, 0, beat)
        snapshot = self._reader.poll(after_seq=self.state.cursor, limit=BATCH_LIMIT)
        return _Read(fence, snapshot, self._reader.last_copy_bytes, beat)

    def _absorb_heartbeat(self, beat: int | None) -> None:
        if beat is not None:
            self.state.heartbeat_at = max(self.state.heartbeat_at or 0, beat)

    async def _absorb(self, snapshot: OutboundPoll) -> None:
        state = self.state
        state.container = snapshot.container
        if snapshot.container is not None:
            state.heartbeat_at = max(state.heartbeat_at or 0, snapshot.container.heartbeat_at)
        claims = [a.status_changed for a in snapshot.acks if a.status is AckStatus.PROCESSING]
        state.oldest_claim_at = min(claims) if claims else None
        if snapshot.messages or snapshot.rejections:
            await self._submit(TailBatch(
                session_id=self._sid, agent_group_id=self._group,
                messages=tuple(snapshot.messages), rejections=tuple(snapshot.rejections),
                cursor=snapshot.cursor))
            state.rows_seen += len(snapshot.messages) + len(snapshot.rejections)
            self._on_activity()
        changed = [a for a in snapshot.acks if self._acked.get(a.message_id) != a.status]
        if changed:
            for ack in changed:
                self._acked[ack.message_id] = ack.status
                self._unapplied[ack.message_id] = ack  # the latest status wins
            self._acks_due.set()
            self._on_activity()
        state.cursor = max(state.cursor, snapshot.cursor)
        if len(self._acked) > 4 * BATCH_LIMIT:
            # Acks of pruned rows disappear from the file; forget them here too.
            live = {a.message_id for a in snapshot.acks}
            for mid in [m for m in self._acked if m not in live]:
                with contextlib.suppress(KeyError):
                    del self._acked[mid]
