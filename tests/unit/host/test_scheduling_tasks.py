"""Scheduled tasks end to end: a session's system rows create and manage them, and
firing writes one inbound ``task`` row per slot into the session's real queue."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from ironclaw.contract.actions import ScheduleTask
from ironclaw.contract.clock import to_datetime
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import MessageId
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.host.delivery import ActionHandled, Delivery, DeliveryRejected
from ironclaw.host.registry import Session
from ironclaw.host.scheduling import Scheduler, TaskLimit, TaskStatus
from tests.support.delivery import Harness, open_harness

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as harness:
        yield harness


def action(name: str, **fields: Any) -> str:
    return json.dumps({"action": name, **fields})


async def run_actions(h: Harness, delivery: Delivery, session: Session,
                      *contents: str) -> list[Any]:
    rows = [h.row(c, kind=MessageKind.SYSTEM) for c in contents]
    seen = len(h.events.events)
    await delivery.submit(h.batch(session, rows))
    await h.progress.wait_through(session.id, rows[-1].seq)
    return list(h.events.events[seen:])


def task_rows(h: Harness, session_id: str) -> list[Any]:
    return [m for m in h.inbound(session_id) if m.kind is MessageKind.TASK]


def berlin(us: int) -> str:
    return to_datetime(us).astimezone(BERLIN).strftime("%a %d %H:%M %Z")


async def test_schedule_task_creates_a_task_of_the_session(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    request = h.row(action("schedule_task", prompt="water the plants", recurrence="daily",
                           timezone="Europe/Berlin", run_at="2025-03-29T09:00:00+01:00"),
                    kind=MessageKind.SYSTEM)
    await delivery.submit(h.batch(session, [request]))
    await h.progress.wait_through(session.id, request.seq)
    events = h.events.events
    (handled,) = [e for e in events if isinstance(e, ActionHandled)]
    assert handled.action == "schedule_task" and handled.result_id.startswith("task_")
    (task,) = await h.scheduler.tasks(session.id)
    assert (task.id, task.prompt, task.recurrence, task.timezone, task.status) == (
        handled.result_id, "water the plants", "daily", "Europe/Berlin", TaskStatus.ACTIVE)
    assert berlin(task.next_run_at or 0) == "Sat 29 09:00 CET"
    assert h.local.conversations() == []  # an action, not a chat message

    # The same row handled again (its record lost in a crash): still one task.
    await h.store.call(lambda c: c.execute("DELETE FROM delivery_records"))
    again = await h.start_delivery()
    await again.submit(h.batch(session, [request]))
    await h.events.wait_for(ActionHandled, 2)
    assert [t.id for t in await h.scheduler.tasks(session.id)] == [task.id]
    assert h.events.of(DeliveryRejected) == []


async def test_invalid_requests_are_rejected_with_events(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    events = await run_actions(
        h, delivery, session,
        action("schedule_task", prompt="too often", recurrence="30s"),
        action("schedule_task", prompt="where?", timezone="Mars/Olympus"),
        action("schedule_task", prompt="   "),
        action("schedule_task", prompt="cron nonsense", recurrence="0 0 31 2 *"),
        action("schedule_task", prompt="naive", run_at="2025-03-29T09:00:00"))
    rejected = [e for e in events if isinstance(e, DeliveryRejected)]
    assert len(rejected) == 5
    assert await h.scheduler.tasks(session.id) == []


async def test_a_due_task_fires_once_per_slot_and_wakes_the_session(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("stretch", None, "hourly",
                                                           None, None))
    assert task.next_run_at == h.clock.now_us()
    # Two sweeps racing for the same slot, then a third: one row.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.scheduler.fire_due)
        nursery.start_soon(h.scheduler.fire_due)
    assert await h.scheduler.fire_due() == 0
    (row,) = task_rows(h, session.id)
    assert (row.content, row.series_id, row.engages) == ("stretch", task.id, True)
    assert set(h.wakes.of(session.id)) == {"task"}  # a spare wake is harmless

    for hour in range(1, 4):
        mock_clock.jump(HOUR)
        assert await h.scheduler.fire_due() == 1
        assert await h.scheduler.fire_due() == 0
        assert len(task_rows(h, session.id)) == hour + 1
    stored = await h.scheduler.get(task.id)
    assert stored.fired_count == 4
    assert stored.next_run_at == (task.next_run_at or 0) + int(4 * HOUR * 1e6)


async def test_a_late_fire_after_downtime_runs_once(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("check mail", None, "15m",
                                                           None, None))
    assert await h.scheduler.fire_due() == 1
    mock_clock.jump(10 * HOUR + 5 * MINUTE)  # forty slots missed
    assert await h.scheduler.fire_due() == 1
    assert await h.scheduler.fire_due() == 0
    assert len(task_rows(h, session.id)) == 2
    stored = await h.scheduler.get(task.id)
    start = task.next_run_at or 0
    assert stored.next_run_at == start + int((10 * HOUR + 15 * MINUTE) * 1e6)


async def test_a_one_shot_task_is_done_after_firing(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    run_at = h.clock.now_us() + int(HOUR * 1e6)
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("once", run_at, None, None, None))
    assert await h.scheduler.fire_due() == 0
    mock_clock.jump(HOUR)
    assert await h.scheduler.fire_due() == 1
    mock_clock.jump(DAY)
    assert await h.scheduler.fire_due() == 0
    stored = await h.scheduler.get(task.id)
    assert (stored.status, stored.next_run_at) == (TaskStatus.DONE, None)
    assert await h.scheduler.tasks(session.id) == []


async def test_a_row_written_before_a_crash_is_not_written_again(
        h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("once", None, "daily", None, None))
    # The crash came after the inbound row was written but before the task advanced.
    await h.queues.enqueue(session.id, [NewInboundMessage(
        id=MessageId(f"{task.id}.{task.next_run_at}"), kind=MessageKind.TASK,
        content="once", series_id=task.id)])
    assert await h.scheduler.fire_due() == 1
    assert len(task_rows(h, session.id)) == 1
    assert (await h.scheduler.get(task.id)).fired_count == 1


async def test_daily_task_in_berlin_fires_at_nine_across_dst(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    # The clock starts Friday 2025-03-28 12:00 UTC; Berlin springs forward on Sunday.
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    await run_actions(h, delivery, session, action(
        "schedule_task", prompt="morning brief", recurrence="0 9 * * *",
        timezone="Europe/Berlin"))
    fired: list[str] = []
    for _ in range(4 * 24):
        mock_clock.jump(HOUR)
        if await h.scheduler.fire_due():
            fired.append(berlin(h.clock.now_us()))
    assert fired == ["Sat 29 09:00 CET", "Sun 30 09:00 CEST", "Mon 31 09:00 CEST",
                     "Tue 01 09:00 CEST"]
    assert len(task_rows(h, session.id)) == 4


async def test_tasks_are_managed_only_by_their_own_session(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    owner = await h.session("g1", "chat-1")
    other = await h.session("g2", "chat-2")
    delivery = await h.start_delivery()
    events = await run_actions(h, delivery, owner, action(
        "schedule_task", prompt="feed the cat", recurrence="daily",
        run_at="2025-03-28T18:00:00+00:00"))
    (created,) = [e for e in events if isinstance(e, ActionHandled)]
    task_id = created.result_id

    events = await run_actions(h, delivery, other, action("cancel_task", task_id=task_id),
                               action("pause_task", task_id=task_id),
                               action("list_tasks"))
    assert len([e for e in events if isinstance(e, DeliveryRejected)]) == 2
    assert (await h.scheduler.get(task_id)).status is TaskStatus.ACTIVE
    (listing,) = [m for m in h.inbound(other.id) if m.kind is MessageKind.SYSTEM]
    assert json.loads(listing.content)["tasks"] == []  # the other session sees nothing

    await run_actions(h, delivery, owner, action("list_tasks"),
                      action("pause_task", task_id=task_id))
    (listing,) = [m for m in h.inbound(owner.id) if m.kind is MessageKind.SYSTEM]
    (listed,) = json.loads(listing.content)["tasks"]
    assert (listed["id"], listed["prompt"], listed["recurrence"]) == (
        task_id, "feed the cat", "daily")
    assert "task_list" in h.wakes.of(owner.id)

    mock_clock.jump(DAY)
    assert await h.scheduler.fire_due() == 0  # paused
    await run_actions(h, delivery, owner, action("resume_task", task_id=task_id))
    assert await h.scheduler.fire_due() == 1  # the missed slot, once
    assert await h.scheduler.fire_due() == 0

    await run_actions(h, delivery, owner, action(
        "update_task", task_id=task_id, prompt="feed both cats", recurrence="12h"))
    updated = await h.scheduler.get(task_id)
    assert (updated.prompt, updated.recurrence) == ("feed both cats", "12h")
    await run_actions(h, delivery, owner, action("cancel_task", task_id=task_id))
    assert (await h.scheduler.get(task_id)).status is TaskStatus.CANCELLED
    mock_clock.jump(DAY)
    assert await h.scheduler.fire_due() == 0
    assert await h.scheduler.tasks(owner.id) == []


async def test_a_session_has_a_bounded_number_of_live_tasks(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    scheduler = Scheduler(h.store, h.inbox, clock=h.clock, max_live_tasks=2)
    request = ScheduleTask("x", None, "daily", None, None)
    for _ in range(2):
        await scheduler.schedule(session_id=session.id, agent_group_id="g1", request=request)
    with pytest.raises(TaskLimit):
        await scheduler.schedule(session_id=session.id, agent_group_id="g1", request=request)


async def test_an_operator_pause_holds_a_task_of_any_session_until_resumed(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("stretch", None, "hourly",
                                                           None, None))
    paused, changed = await h.scheduler.operate(task.id, "pause_task")
    assert changed and paused.status is TaskStatus.PAUSED
    assert (await h.scheduler.operate(task.id, "pause_task"))[1] is False
    mock_clock.jump(3 * HOUR)
    assert await h.scheduler.fire_due() == 0
    assert task_rows(h, session.id) == []
    assert [t.id for t in await h.scheduler.all_tasks()] == [task.id]
    await h.scheduler.operate(task.id, "resume_task")
    assert await h.scheduler.fire_due() == 1  # the missed slot fires once
    cancelled, _ = await h.scheduler.operate(task.id, "cancel_task")
    assert cancelled.status is TaskStatus.CANCELLED
    assert await h.scheduler.all_tasks() == []
    assert [t.id for t in await h.scheduler.all_tasks(status=TaskStatus.CANCELLED)] == \
        [task.id]
    with pytest.raises(ValueError, match="unknown task action"):
        await h.scheduler.operate(task.id, "update_task")
