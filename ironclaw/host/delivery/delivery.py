"""The delivery actor: outbound rows in, chats, other agents, the scheduler, the
questions store and the capability gate out.

Fairness by construction: every session gets its own :class:`SessionWorker` (a task in
this actor's nursery) with a small bounded mailbox. ``submit(batch)`` puts the batch in
that session's mailbox and waits only while *that* mailbox is full, so a session's
backlog, slow chat or failing messages delay that session and no other. Workers are
started on a session's first batch and retire after ``idle_retire`` seconds with
nothing in flight.

Started with ``await nursery.start(delivery.run)``; cancelling it stops every worker.
What is in flight when it stops is safe: everything settled is recorded in host.db
(``delivery_records``), so a restarted control plane that re-reads the same rows skips
what was delivered or acted on and carries on with the rest.
"""

from __future__ import annotations

import trio

from ironclaw.host.delivery.a2a import AgentRelay
from ironclaw.host.delivery.actions import ActionDispatcher
from ironclaw.host.delivery.handler import ChannelSender, FileReader, RowHandler
from ironclaw.host.delivery.policy import DeliveryPolicy
from ironclaw.host.delivery.records import DeliveryRecords
from ironclaw.host.delivery.worker import SessionWorker
from ironclaw.host.inbound import SessionInbox
from ironclaw.host.mailboxes import CapabilityGate, OutboundProgress, TailBatch, TaskScheduler
from ironclaw.host.questions import Questions
from ironclaw.host.registry import Registry
from ironclaw.runtime import DiscardEvents, EventSink, SystemClock, WallClock

__all__ = ["Delivery"]


class Delivery:
    def __init__(self, *, records: DeliveryRecords, registry: Registry,
                 channels: ChannelSender,
                 inbox: SessionInbox, progress: OutboundProgress, gate: CapabilityGate,
                 scheduler: TaskScheduler, questions: Questions, events: EventSink | None = None,
                 policy: DeliveryPolicy | None = None, clock: WallClock | None = None,
                 files: FileReader | None = None) -> None:
        self._registry = registry
        self._progress = progress
        self._events = events or DiscardEvents()
        self._policy = policy or DeliveryPolicy()
        self._clock = clock or SystemClock()
        self.records = records
        self._handler = RowHandler(
            channels=channels, origins=registry, records=self.records,
            relay=AgentRelay(registry, inbox, self._policy, self._clock),
            actions=ActionDispatcher(scheduler=scheduler, questions=questions, gate=gate),
            events=self._events, clock=self._clock, files=files)
        self._workers: dict[str, SessionWorker] = {}
        # The last watermark reported per session, outliving its worker, so a new
        # worker never reports lower and skips rows already settled.
        self._reported: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> bool:
        """True while the actor is up (for readiness checks)."""
        return self._nursery is not None

    @property
    def active_sessions(self) -> int:
        return len(self._workers)

    def reported(self, session_id: str) -> int:
        """The highest handled-through seq reported for the session (0 if none)."""
        return self._reported.get(session_id, 0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._workers.clear()

    async def submit(self, batch: TailBatch) -> None:
        """Hand a session's batch to its worker, waiting while that session's mailbox is
        full. Rows already handled (at or below the reported watermark, in flight, or
        recorded in host.db) are skipped, so re-submitting a batch is harmless.

        After delivery has stopped (the plane is shutting down: delivery stops only with
        the whole tree) the batch is left where it is. Its rows stay in the outbound
        file past the durable cursor, and the next start reads them again."""
        while True:
            if self._nursery is None:
                return
            worker = self._workers.get(batch.session_id)
            if worker is None:
                try:
                    worker = self._spawn(batch)
                except RuntimeError:
                    # The nursery is closing: delivery is stopping, as above.
                    return
            try:
                await worker.mailbox.send(batch)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The worker retired between lookup and send; the batch was not taken.
                if self._workers.get(batch.session_id) is worker:
                    del self._workers[batch.session_id]

    def _spawn(self, batch: TailBatch) -> SessionWorker:
        if self._nursery is None:
            raise RuntimeError("delivery is not running")
        worker = SessionWorker(
            batch.session_id, batch.agent_group_id,
            registry=self._registry, handler=self._handler, records=self.records,
            progress=self._progress, events=self._events, policy=self._policy,
            clock=self._clock, reported=self._reported.get(batch.session_id, 0),
            on_report=self._note_report, on_exit=self._forget)
        self._nursery.start_soon(worker.run)
        self._workers[batch.session_id] = worker
        return worker

    def _note_report(self, session_id: str, seq: int) -> None:
        self._reported[session_id] = max(seq, self._reported.get(session_id, 0))

    def _forget(self, worker: SessionWorker) -> None:
        if self._workers.get(worker.session_id) is worker:
            del self._workers[worker.session_id]
