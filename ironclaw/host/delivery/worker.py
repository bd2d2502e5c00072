"""One session's delivery worker: its mailbox, its two lanes, its watermark.

* **Main lane**: takes batches from the session's bounded mailbox and handles each new
  row in seq order, in line. A row that fails transiently is not retried here: it moves
  to the timed lane, and the main lane carries on with the next row. A row with
  ``deliver_after`` in the future moves there too, untried.
* **Timed lane**: a heap of (due time, row), for held rows and retries, worked one at a
  time as they fall due. Retries back off exponentially (honouring a platform's
  ``retry_after``) and are dead-lettered after the last attempt.
* **Watermark**: the highest seq such that every row at or below it is settled; reported
  through :class:`~ironclaw.host.mailboxes.OutboundProgress` when it rises, never
  lower than before, ``report_delay`` after the batch that raised it (the batches in
  between share the report), and before the worker retires. A retrying or held row
  holds it back (so the sandbox keeps the row) without holding back later rows'
  delivery. A report lost to a crash costs nothing but a re-read: the rows above the
  durable watermark are read again and skipped by their delivery records.

Everything a row can cause is caught per row, so a hostile row fails only itself, and
a worker touches nothing of another session's.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Literal

import attrs
import trio

from ironclaw.contract.rows import OutboundMessage
from ironclaw.host.channels.base import safe_reason
from ironclaw.host.mailboxes import OutboundProgress, TailBatch
from ironclaw.host.registry import Registry
from ironclaw.runtime import EventSink, WallClock

from .events import DeliveryHeld, DeliveryRetrying, WorkerFailed
from .handler import Retry, RowHandler
from .policy import DeliveryPolicy
from .records import DeliveryRecords, Record, delivery_key
from .targets import SessionContext, load_context

__all__ = ["SessionWorker"]

logger = logging.getLogger(__name__)


@attrs.define
class _Waiting:
    row: OutboundMessage
    attempts: int  # attempts already made
    held: bool  # never tried yet: waiting for deliver_after
    # Set when the row's fate is decided and only recording it failed (host.db
    # trouble): ("dead" | "rejected", reason). The timed lane tries to record it again.
    verdict: tuple[Literal["dead", "rejected"], str] | None = None


class SessionWorker:
    def __init__(self, session_id: str, agent_group_id: str, *,
                 registry: Registry, handler: RowHandler, records: DeliveryRecords,
                 progress: OutboundProgress, events: EventSink, policy: DeliveryPolicy,
                 clock: WallClock, reported: int,
                 on_report: Callable[[str, int], None],
                 on_exit: Callable[[SessionWorker], None]) -> None:
        self.session_id = session_id
        self.agent_group_id = agent_group_id
        self._registry = registry
        self._handler = handler
        self._records = records
        self._progress = progress
        self._events = events
        self._policy = policy
        self._clock = clock
        self._on_report = on_report
        self._on_exit = on_exit
        self.mailbox, self._receive = trio.open_memory_channel[TailBatch](
            policy.inbox_batches)
        self.reported = reported
        self._examined = reported
        self._unsettled: set[int] = set()
        self._timed: list[tuple[int, int, _Waiting]] = []
        self._held = self._retrying = 0
        self._retry_room = trio.Event()
        self._nap: trio.CancelScope | None = None
        self._report_lock = trio.Lock()
        self._report_due = trio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timed_lane)
                nursery.start_soon(self._reporter)
                await self._main_lane()
                nursery.cancel_scope.cancel()
        except Exception as exc:  # a bug: contain it to this session, say so
            logger.exception("delivery worker for %s failed", self.session_id)
            self._events.publish(WorkerFailed(self.session_id, safe_reason(exc)))
        finally:
            self._exit()

    def _exit(self) -> None:
        self._on_exit(self)
        self._receive.close()

    async def _main_lane(self) -> None:
        while True:
            with trio.move_on_after(self._policy.idle_retire) as idle:
                batch = await self._receive.receive()
            if not idle.cancelled_caught:
                await self._take(batch)
                continue
            await self._report()
            # Retire only with nothing in flight; no checkpoint between this check and
            # closing the mailbox, so a batch is either taken or refused (then the
            # submitter starts a fresh worker), never dropped.
            if not self._unsettled and not self._timed and (
                    self._receive.statistics().current_buffer_used == 0):
                self._exit()
                return

    # -- the main lane ------------------------------------------------------------------

    async def _take(self, batch: TailBatch) -> None:
        self._examined = max(self._examined, batch.cursor)
        for rejection in batch.rejections:
            self._handler.rejected_row(self.session_id, rejection)
        fresh = sorted((m for m in batch.messages
                        if m.seq > self.reported and m.seq not in self._unsettled),
                       key=lambda m: m.seq)
        self._unsettled.update(m.seq for m in fresh)
        if fresh:
            known = await self._known([delivery_key(self.session_id, m.id) for m in fresh])
            context = await self._context()
            for done, row in enumerate(fresh, 1):
                record = known.get(delivery_key(self.session_id, row.id))
                if record is not None and record.final:
                    self._unsettled.discard(row.seq)  # settled before a restart
                elif row.deliver_after is not None and (
                        row.deliver_after > self._clock.now_us()):
                    await self._hold(row)
                else:
                    prior = record.attempts if record is not None else 0
                    await self._attempt(_Waiting(row, prior, held=False), context,
                                        wait_for_room=True)
                if done % self._policy.progress_every == 0:
                    await self._report()
        self._report_due.set()

    async def _known(self, keys: list[str]) -> dict[str, Record]:
        try:
            return await self._records.lookup(keys)
        except Exception as exc:  # each row's own handling is idempotent anyway
            logger.warning("delivery records unreadable for %s: %s", self.session_id,
                           safe_reason(exc))
            return {}

    async def _context(self) -> SessionContext | None:
        try:
            return await load_context(self._registry, self.session_id, self.agent_group_id)
        except Exception as exc:
            logger.warning("registry unreadable for %s: %s", self.session_id,
                           safe_reason(exc))
            return None

    async def _hold(self, row: OutboundMessage) -> None:
        due = row.deliver_after
        assert due is not None
        horizon = self._clock.now_us() + int(self._policy.max_hold * 1e6)
        if due > horizon or self._held >= self._policy.max_held:
            reason = ("deliver_after is too far ahead" if due > horizon
                      else f"more than {self._policy.max_held} rows held")
            await self._settle(_Waiting(row, 0, held=False, verdict=("rejected", reason)))
            return
        self._events.publish(DeliveryHeld(self.session_id, row.id, row.seq, due))
        self._push(due, _Waiting(row, 0, held=True))

    # -- attempts -----------------------------------------------------------------------

    async def _attempt(self, waiting: _Waiting, context: SessionContext | None, *,
                       wait_for_room: bool) -> None:
        """One try. On a transient failure the row goes to the timed lane; a *new*
        failure from the main lane first waits while ``max_retrying`` rows are already
        retrying (the timed lane never waits: it is what makes room)."""
        waiting.attempts += 1
        waiting.held = False
        row = waiting.row
        try:
            outcome = await self._handler.handle(self.session_id, row, context,
                                                 waiting.attempts)
        except Exception as exc:
            outcome = Retry(safe_reason(exc))
        if not isinstance(outcome, Retry):
            self._unsettled.discard(row.seq)
            return
        if waiting.attempts >= self._policy.max_attempts:
            waiting.verdict = ("dead", outcome.reason)
            await self._settle(waiting)
            return
        delay = self._policy.backoff(waiting.attempts, outcome.retry_after)
        self._events.publish(DeliveryRetrying(self.session_id, row.id, row.seq,
                                              waiting.attempts, delay, outcome.reason))
        try:
            await self._records.note_retry(delivery_key(self.session_id, row.id),
                                           self.session_id, attempts=waiting.attempts,
                                           error=outcome.reason, at=self._clock.now_us())
        except Exception as exc:  # only the count's durability is lost
            logger.warning("could not record a retry of %s: %s", row.id, safe_reason(exc))
        while wait_for_room and self._retrying >= self._policy.max_retrying:
            self._retry_room = trio.Event()
            await self._retry_room.wait()
        self._push(self._clock.now_us() + int(delay * 1e6), waiting)

    async def _settle(self, waiting: _Waiting) -> None:
        """Record a decided fate (dead-lettered or refused); if even that fails, keep
        the row and record it later rather than lose track of it."""
        assert waiting.verdict is not None
        fate, reason = waiting.verdict
        row = waiting.row
        try:
            if fate == "dead":
                await self._handler.dead_letter(self.session_id, row, waiting.attempts,
                                                reason)
            else:
                await self._handler.reject(self.session_id,
                                           delivery_key(self.session_id, row.id), row, reason)
            self._unsettled.discard(row.seq)
        except Exception as exc:
            logger.warning("could not settle %s: %s", row.id, safe_reason(exc))
            waiting.held = False
            self._push(self._clock.now_us() + int(self._policy.backoff_max * 1e6), waiting)

    # -- the timed lane -----------------------------------------------------------------

    def _push(self, due: int, waiting: _Waiting) -> None:
        if waiting.held:
            self._held += 1
        else:
            self._retrying += 1
        heapq.heappush(self._timed, (due, waiting.row.seq, waiting))
        if self._nap is not None:
            self._nap.cancel()  # the new entry may be due sooner than the one awaited

    async def _timed_lane(self) -> None:
        while True:
            with trio.CancelScope() as self._nap:
                if self._timed:
                    await self._clock.sleep_until(self._timed[0][0])
                else:
                    await trio.sleep_forever()
            self._nap = None
            while self._timed and self._timed[0][0] <= self._clock.now_us():
                _, _, waiting = heapq.heappop(self._timed)
                if waiting.held:
                    self._held -= 1
                else:
                    self._retrying -= 1
                    self._retry_room.set()
                if waiting.verdict is not None:
                    await self._settle(waiting)
                else:
                    await self._attempt(waiting, await self._context(), wait_for_room=False)
                await self._report()

    # -- the watermark ------------------------------------------------------------------

    def watermark(self) -> int:
        """Every row at or below this seq is settled."""
        if self._unsettled:
            return min(self._unsettled) - 1
        return self._examined

    async def _reporter(self) -> None:
        while True:
            await self._report_due.wait()
            self._report_due = trio.Event()
            await self._clock.sleep_until(
                self._clock.now_us() + int(self._policy.report_delay * 1e6))
            await self._report()

    async def _report(self) -> None:
        async with self._report_lock:  # two lanes report; keep the calls in order
            mark = self.watermark()
            if mark <= self.reported:
                return
            try:
                await self._progress.handled_through(self.session_id, mark)
            except Exception as exc:
                logger.warning("progress of %s not recorded: %s", self.session_id,
                               safe_reason(exc))
                return
            self.reported = mark
            self._on_report(self.session_id, mark)
