"""The sweeper: the control plane's periodic chores, one pass every ``interval`` seconds.

Each pass, in order (a failing step is reported and never stops the others):

1. **Due tasks**: the scheduler fires every task due now (one inbound row and a wake
   each; a recurring task moves to its next slot).
2. **Answers**: an answer recorded but not yet fed back to its session (a crash in
   between) is fed back.
3. **Stuck sandboxes**, from :meth:`SessionsView.health`, for running sessions only:
   * a *stale heartbeat*: none for ``heartbeat_timeout`` seconds (a sandbox that never
     beat counts from its launch);
   * a *claim held too long*: the oldest inbound row the agent acked ``processing`` is
     older than ``max(declared tool timeout, claim_timeout)``. A tool that declared a
     longer timeout is left alone within it (the declaration is capped at
     ``max_tool_timeout``, so a sandbox cannot declare itself immortal).
   Either sends ``StopSession(restart=True, reason=...)`` to the sessions mailbox and
   publishes ``sweeper.stuck``; a session just stopped is not stopped again for
   ``stop_cooldown`` seconds. (Idle retirement is the session actor's own job.)
4. **Retention**: each known session's inbound rows finished before ``now -
   inbound_retention``; settled delivery records, answered questions and finished
   tasks older than ``records_retention``; and, when ``session_retention`` is set,
   every session idle longer than that is deleted (``SessionDeleter.delete_idle``:
   not a live one, not one with a task planned, not a quarantined one).

Timing is on a :class:`WallClock`; the loop sleeps on Trio's clock, so
``autojump_clock`` drives it in tests.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

import attrs
import trio

from ironclaw.runtime import DiscardEvents, EventSink, SystemClock, WallClock

from .delivery.records import DeliveryRecords
from .inbound import InboundQueues
from .mailboxes import DueTasks, SessionHealth, SessionsMessage, SessionsView, StopSession
from .questions import Questions

__all__ = [
    "SessionStuck",
    "SweepFailed",
    "SweepPolicy",
    "SweepReport",
    "Sweeper",
    "stuck_reason",
]

logger = logging.getLogger(__name__)

US = 1_000_000


@attrs.frozen
class SweepPolicy:
    interval: float = 10.0
    heartbeat_timeout: float = 120.0
    claim_timeout: float = 600.0
    max_tool_timeout: float = 4 * 3600.0
    stop_cooldown: float = 120.0
    inbound_retention: float = 86_400.0
    records_retention: float = 30 * 86_400.0
    seen_events_retention: float = 7 * 86_400.0
    # Sessions idle (no message in or task planned) longer than this are deleted, with
    # their queues and keys; None keeps every session for ever.
    session_retention: float | None = None
    due_batch: int = 100


@attrs.frozen
class SessionStuck:
    type: ClassVar[str] = "sweeper.stuck"
    session_id: str
    reason: str
    heartbeat_age_s: float | None
    claim_age_s: float | None


@attrs.frozen
class SweepFailed:
    type: ClassVar[str] = "sweeper.step_failed"
    step: str
    reason: str


@attrs.frozen
class SweepReport:
    type: ClassVar[str] = "sweeper.swept"
    tasks_fired: int = 0
    answers_fed_back: int = 0
    sessions_stopped: int = 0
    inbound_pruned: int = 0
    records_pruned: int = 0
    questions_pruned: int = 0
    tasks_pruned: int = 0
    channel_events_pruned: int = 0
    sessions_deleted: int = 0
    failed_steps: int = 0


def _age_s(now: int, then: int | None) -> float | None:
    return None if then is None else max(0, now - then) / US


def _since_launch(then: int | None, launched_at: int | None) -> int | None:
    """A heartbeat or claim left by the sandbox before this one counts from this one's
    launch: a sandbox slower to start than the timeout is not stuck yet."""
    if then is None or launched_at is None:
        return then
    return max(then, launched_at)


def stuck_reason(health: SessionHealth, now: int, policy: SweepPolicy) -> str | None:
    """Why this session's sandbox counts as stuck, or ``None`` if it does not."""
    if not health.running:
        return None
    # A sandbox that has not beaten once (frozen or hung while it boots, before its
    # first heartbeat file) is as silent as one that stopped beating: count from launch.
    beat = (health.launched_at if health.heartbeat_at is None
            else _since_launch(health.heartbeat_at, health.launched_at))
    heartbeat = _age_s(now, beat)
    if heartbeat is not None and heartbeat > policy.heartbeat_timeout:
        return f"no heartbeat for {heartbeat:.0f}s"
    claim = _age_s(now, _since_launch(health.oldest_claim_at, health.launched_at))
    if claim is None:
        return None
    allowed = policy.claim_timeout
    if health.current_tool is not None and health.tool_declared_timeout_ms is not None:
        declared = min(max(0, health.tool_declared_timeout_ms) / 1000, policy.max_tool_timeout)
        allowed = max(allowed, declared)
    if claim > allowed:
        return f"a message claimed for {claim:.0f}s (allowed {allowed:.0f}s)"
    return None


class Sweeper:
    def __init__(self, *, scheduler: DueTasks, questions: Questions,
                 records: DeliveryRecords, sessions: SessionsView,
                 sessions_mailbox: trio.MemorySendChannel[SessionsMessage],
                 queues: InboundQueues, events: EventSink | None = None,
                 policy: SweepPolicy | None = None, clock: WallClock | None = None,
                 seen_events: Callable[[int], Awaitable[int]] | None = None,
                 idle_sessions: Callable[[int], Awaitable[int]] | None = None) -> None:
        """``seen_events(before_us)`` forgets the channels' seen platform event ids
        older than ``before_us`` (they only guard against redelivery, which platforms
        do within hours). ``idle_sessions(before_us)`` deletes the sessions idle since
        before ``before_us`` (``SessionDeleter.delete_idle``), under
        ``policy.session_retention``."""
        self._seen_events = seen_events
        self._idle_sessions = idle_sessions
        self._scheduler = scheduler
        self._questions = questions
        self._records = records
        self._sessions = sessions
        self._mailbox = sessions_mailbox
        self._queues = queues
        self._events = events or DiscardEvents()
        self.policy = policy or SweepPolicy()
        self._clock = clock or SystemClock()
        self._stopped_at: dict[str, int] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            await self.sweep()
            await trio.sleep(self.policy.interval)

    async def sweep(self) -> SweepReport:
        """One pass; never raises for a failing step."""
        counts: dict[str, int] = {}
        failed = 0
        steps: list[tuple[str, Callable[[], Awaitable[dict[str, int]]]]] = [
            ("tasks", self._fire_due), ("answers", self._feed_back),
            ("stuck", self._stop_stuck), ("retention", self._retain)]
        for name, step in steps:
            try:
                counts.update(await step())
            except Exception as exc:
                failed += 1
                logger.warning("sweep step %s failed: %s", name, type(exc).__name__)
                self._events.publish(SweepFailed(name, type(exc).__name__))
        report = SweepReport(failed_steps=failed, **counts)
        if report != SweepReport():
            self._events.publish(report)
        return report

    async def _fire_due(self) -> dict[str, int]:
        return {"tasks_fired": await self._scheduler.fire_due(limit=self.policy.due_batch)}

    async def _feed_back(self) -> dict[str, int]:
        return {"answers_fed_back": await self._questions.feed_back_answered()}

    async def _stop_stuck(self) -> dict[str, int]:
        now = self._clock.now_us()
        cooldown = int(self.policy.stop_cooldown * US)
        self._stopped_at = {s: t for s, t in self._stopped_at.items() if now - t < cooldown}
        stopped = 0
        for health in self._sessions.health():
            reason = stuck_reason(health, now, self.policy)
            if reason is None or health.session_id in self._stopped_at:
                continue
            await self._mailbox.send(StopSession(health.session_id, reason, restart=True))
            self._stopped_at[health.session_id] = now
            stopped += 1
            logger.warning("restarting stuck session %s: %s", health.session_id, reason)
            self._events.publish(SessionStuck(health.session_id, reason,
                                              _age_s(now, health.heartbeat_at),
                                              _age_s(now, health.oldest_claim_at)))
        return {"sessions_stopped": stopped}

    async def _retain(self) -> dict[str, int]:
        now = self._clock.now_us()
        inbound_cutoff = now - int(self.policy.inbound_retention * US)
        records_cutoff = now - int(self.policy.records_retention * US)
        pruned = 0
        for health in self._sessions.health():
            try:
                writer = await self._queues.inbound(health.session_id)
                pruned += await trio.to_thread.run_sync(
                    functools.partial(writer.prune, finished_before=inbound_cutoff))
            except Exception as exc:  # one broken queue must not stop the others
                logger.warning("could not prune %s: %s", health.session_id,
                               type(exc).__name__)
        return {
            "inbound_pruned": pruned,
            "records_pruned": await self._records.prune(before=records_cutoff),
            "questions_pruned": await self._questions.prune(answered_before=records_cutoff),
            "tasks_pruned": await self._scheduler.prune(finished_before=records_cutoff),
            "channel_events_pruned": 0 if self._seen_events is None else
            await self._seen_events(now - int(self.policy.seen_events_retention * US)),
            "sessions_deleted": await self._delete_idle(now),
        }

    async def _delete_idle(self, now: int) -> int:
        retention = self.policy.session_retention
        if retention is None or self._idle_sessions is None:
            return 0
        return await self._idle_sessions(now - int(retention * US))
