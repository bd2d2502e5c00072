"""The scheduler: tasks a session asked for, and firing them when due.

``schedule`` and ``control`` serve the ``schedule_task`` and task-management system
actions (delivery calls them; the anchor left them unrecognised and so escalated them
to a human). ``fire_due`` is called by the sweeper: each due task becomes one inbound
``task`` row (``engages = 1``, ``series_id`` = the task id, content = the prompt) in its
session, which is then woken; a recurring task moves to its first slot strictly after
now, a one-shot one is done. When the session's inbound is at its byte cap the slot is
skipped the same way (``task.fire_failed`` with reason ``QueueFull``), so a task never
retries into a full queue.

Exactly once per slot, across crashes: the inbound row's id is ``<task id>.<slot>``, so
re-firing a slot whose row was written before a crash writes nothing; and the task
advances by compare-and-set on ``next_run_at``, so one slot advances it once.
"""

from __future__ import annotations

import logging
import secrets
from typing import ClassVar

import attrs

from ironclaw.contract.actions import ScheduleTask, TaskControl
from ironclaw.contract.clock import to_iso
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import new_message_id, validate_message_id
from ironclaw.contract.jsonvalue import canonical_json
from ironclaw.contract.queue import QueueFull
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.host.inbound.inbox import SessionInbox, cap_content
from ironclaw.host.store import HostStore
from ironclaw.runtime import DiscardEvents, EventSink, SystemClock, WallClock

from . import tasks as t
from .recurrence import InvalidSchedule, first_slot, next_slot, parse_recurrence, parse_timezone

__all__ = ["Scheduler", "TaskChanged", "TaskCreated", "TaskFireFailed", "TaskFired"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_LIVE_TASKS = 100
LIST_PROMPT_CHARS = 200


@attrs.frozen
class TaskCreated:
    type: ClassVar[str] = "task.created"
    task_id: str
    session_id: str
    next_run_at: int | None
    recurring: bool


@attrs.frozen
class TaskChanged:
    type: ClassVar[str] = "task.changed"
    task_id: str
    session_id: str
    action: str
    status: str


@attrs.frozen
class TaskFired:
    type: ClassVar[str] = "task.fired"
    task_id: str
    session_id: str
    slot: int
    next_run_at: int | None
    inbound_id: str


@attrs.frozen
class TaskFireFailed:
    type: ClassVar[str] = "task.fire_failed"
    task_id: str
    session_id: str
    reason: str


def new_task_id() -> str:
    return "task_" + secrets.token_hex(12)


class Scheduler:
    def __init__(self, store: HostStore, inbox: SessionInbox, *,
                 events: EventSink | None = None, clock: WallClock | None = None,
                 max_live_tasks: int = DEFAULT_MAX_LIVE_TASKS) -> None:
        self._store = store
        self._inbox = inbox
        self._events = events or DiscardEvents()
        self._clock = clock or SystemClock()
        self._max_live = max_live_tasks

    # -- queries ----------------------------------------------------------------------

    async def get(self, task_id: str, session_id: str | None = None) -> t.Task:
        return await self._store.call(t.get, task_id, session_id)

    async def tasks(self, session_id: str, limit: int = DEFAULT_MAX_LIVE_TASKS) -> list[t.Task]:
        """The session's live (active or paused) tasks, soonest first."""
        return await self._store.call(t.for_session, session_id, limit)

    async def all_tasks(self, *, status: t.TaskStatus | None = None,
                        session_id: str | None = None, limit: int = 100) -> list[t.Task]:
        """Every session's tasks, for an operator: live ones unless ``status`` says."""
        return await self._store.call(t.listing, None if status is None else status.value,
                                      session_id, limit)

    # -- requests from an operator ------------------------------------------------------

    OPERATOR_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"pause_task", "resume_task", "cancel_task"})

    async def operate(self, task_id: str, action: str) -> tuple[t.Task, bool]:
        """Pause, resume or cancel any session's task for a human: (the task after,
        whether it changed). Raises :class:`TaskNotFound`, :class:`TaskConflict`."""
        if action not in self.OPERATOR_ACTIONS:
            raise InvalidSchedule(f"unknown task action {action}")
        before = await self.get(task_id)
        after = self._changed(before, TaskControl(action=action, task_id=task_id,
                                                  prompt=None, run_at=None,
                                                  recurrence=None))
        changed = after.status is not before.status
        if changed:
            await self._store.transaction(t.replace, before, after)
            self._events.publish(TaskChanged(after.id, after.session_id, action,
                                             after.status.value))
        return after, changed

    # -- requests from a session ---------------------------------------------------------

    async def schedule(self, *, session_id: str, agent_group_id: str, request: ScheduleTask,
                       task_id: str | None = None) -> t.Task:
        """Create a task. ``task_id`` makes a retried request idempotent. Raises
        :class:`InvalidSchedule`, :class:`TaskLimit` (both ``ValueError``)."""
        if not request.prompt.strip():
            raise InvalidSchedule("a task needs a prompt")
        zone = parse_timezone(request.timezone)
        rule = parse_recurrence(request.recurrence)
        now = self._clock.now_us()
        start = first_slot(rule, zone, run_at=request.run_at, now_us=now)
        task_id = task_id or new_task_id()
        task = t.Task(id=task_id, session_id=session_id, agent_group_id=agent_group_id,
                      prompt=request.prompt, next_run_at=start,
                      recurrence=None if rule is None else rule.text, timezone=zone.key,
                      status=t.TaskStatus.ACTIVE, series_id=task_id, created_at=now,
                      updated_at=now, anchor_at=start)
        stored, created = await self._store.transaction(t.insert, task, self._max_live)
        if created:
            self._events.publish(TaskCreated(stored.id, session_id, stored.next_run_at,
                                             rule is not None))
        return stored

    async def control(self, *, session_id: str, request: TaskControl,
                      reply_id: str | None = None) -> list[t.Task]:
        """List, cancel, pause, resume or update one of the session's own tasks.

        ``list_tasks`` answers the session with an inbound ``system`` row (id
        ``reply_id`` when given, so a retry does not answer twice) and wakes it. The
        others return the changed task. Raises :class:`TaskNotFound` (also for another
        session's task), :class:`TaskConflict`, :class:`InvalidSchedule`."""
        if request.action == "list_tasks":
            listed = await self.tasks(session_id)
            await self._answer_list(session_id, listed, reply_id)
            return listed
        if request.task_id is None:
            raise InvalidSchedule(f"{request.action} needs a task_id")
        before = await self.get(request.task_id, session_id)
        after = self._changed(before, request)
        if after != before:
            await self._store.transaction(t.replace, before, after)
        self._events.publish(TaskChanged(after.id, session_id, request.action,
                                         after.status.value))
        return [after]

    def _changed(self, task: t.Task, request: TaskControl) -> t.Task:
        now = self._clock.now_us()
        live = task.status in (t.TaskStatus.ACTIVE, t.TaskStatus.PAUSED)
        action = request.action
        if action == "cancel_task":
            if task.status is t.TaskStatus.CANCELLED:
                return task
            if not live:
                raise t.TaskConflict(f"the task is {task.status.value}")
            return attrs.evolve(task, status=t.TaskStatus.CANCELLED, next_run_at=None,
                                updated_at=now)
        if not live:
            raise t.TaskConflict(f"the task is {task.status.value}")
        if action == "pause_task":
            return attrs.evolve(task, status=t.TaskStatus.PAUSED, updated_at=now)
        if action == "resume_task":
            # A slot missed while paused fires once, then the series continues.
            return attrs.evolve(task, status=t.TaskStatus.ACTIVE, updated_at=now)
        if action != "update_task":
            raise InvalidSchedule(f"unknown task action {action}")
        zone = parse_timezone(task.timezone)
        text = task.recurrence if request.recurrence is None else request.recurrence
        rule = parse_recurrence(text)
        next_run, anchor = task.next_run_at, task.anchor_at
        if request.run_at is not None or request.recurrence is not None:
            start = request.run_at if request.run_at is not None else (next_run or now)
            next_run = anchor = first_slot(rule, zone, run_at=start, now_us=now)
        prompt = task.prompt if request.prompt is None else request.prompt
        if not prompt.strip():
            raise InvalidSchedule("a task needs a prompt")
        return attrs.evolve(task, prompt=prompt, next_run_at=next_run, anchor_at=anchor,
                            recurrence=None if rule is None else rule.text, updated_at=now)

    async def _answer_list(self, session_id: str, listed: list[t.Task],
                           reply_id: str | None) -> None:
        body = {"reply_to": "list_tasks", "tasks": [{
            "id": task.id, "status": task.status.value, "recurrence": task.recurrence,
            "timezone": task.timezone, "prompt": task.prompt[:LIST_PROMPT_CHARS],
            "next_run_at": None if task.next_run_at is None else to_iso(task.next_run_at),
        } for task in listed]}
        message_id = validate_message_id(reply_id) if reply_id else new_message_id("tasks")
        await self._inbox.put(session_id, NewInboundMessage(
            id=message_id, kind=MessageKind.SYSTEM, content=cap_content(canonical_json(body)),
            engages=True), wake_reason="task_list")

    # -- firing ---------------------------------------------------------------------------

    async def fire_due(self, *, limit: int = 100) -> int:
        """Fire every active task due now (at most ``limit``); return how many fired. A
        task that cannot be fired (its queue is broken) is reported and tried again on
        the next call; it never stops the others."""
        now = self._clock.now_us()
        fired = 0
        for task in await self._store.call(t.due, now, limit):
            try:
                if await self._fire(task, now):
                    fired += 1
            except Exception as exc:
                logger.warning("task %s did not fire: %s", task.id, type(exc).__name__)
                self._events.publish(TaskFireFailed(task.id, task.session_id,
                                                    type(exc).__name__))
        return fired

    async def _fire(self, task: t.Task, now: int) -> bool:
        slot = task.next_run_at
        assert slot is not None  # due() selects next_run_at <= now
        inbound_id = validate_message_id(f"{task.id}.{slot}")
        try:
            await self._inbox.put(task.session_id, NewInboundMessage(
                id=inbound_id, kind=MessageKind.TASK, content=task.prompt, engages=True,
                series_id=task.id, recurrence=task.recurrence), wake_reason="task")
            skipped = False
        except QueueFull:
            # The session's own inbound is at its cap (its agent scheduled more than
            # it finishes): the slot is skipped, never retried into a full queue. A
            # series moves on to its next slot; a one-shot task is done.
            skipped = True
        rule = parse_recurrence(task.recurrence)
        status, next_run = t.TaskStatus.DONE, None
        if rule is not None:
            try:
                next_run = next_slot(rule, parse_timezone(task.timezone),
                                     anchor_us=task.anchor_at or slot,
                                     after_us=max(now, slot))
                status = t.TaskStatus.ACTIVE
            except InvalidSchedule:
                pass  # the rule has no further slot: the series is over
        after = attrs.evolve(task, status=status, next_run_at=next_run, last_run_at=now,
                             fired_count=task.fired_count + (0 if skipped else 1),
                             updated_at=now)
        try:
            await self._store.transaction(t.replace, task, after)
        except t.TaskConflict:
            return False  # cancelled or advanced meanwhile; the row exists at most once
        if skipped:
            logger.warning("task %s skipped a slot: its session's inbound is full", task.id)
            self._events.publish(TaskFireFailed(task.id, task.session_id, "QueueFull"))
            return False
        self._events.publish(TaskFired(task.id, task.session_id, slot, next_run, inbound_id))
        return True

    async def prune(self, *, finished_before: int) -> int:
        """Delete cancelled and done tasks that settled before the cutoff."""
        return await self._store.transaction(t.prune, finished_before)
