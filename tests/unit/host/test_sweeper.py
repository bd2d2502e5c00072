"""The sweeper: stuck sandboxes, due tasks on its own loop, and retention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from ironclaw.contract.actions import AskUserQuestion, ScheduleTask, TaskControl
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import MessageId
from ironclaw.contract.rows import NewInboundMessage, ProcessingAck
from ironclaw.host.delivery import DeliveryRecords, RecordStatus
from ironclaw.host.mailboxes import SessionHealth, SessionsMessage, StopSession
from ironclaw.host.sweeper import SessionStuck, Sweeper, SweepFailed, SweepPolicy, SweepReport
from tests.support.delivery import Harness, health, open_harness

SECOND = 1_000_000
MINUTE = 60 * SECOND


class SessionsView:
    def __init__(self) -> None:
        self.sessions: list[SessionHealth] = []
        self.broken = False

    def health(self) -> list[SessionHealth]:
        if self.broken:
            raise RuntimeError("sessions actor is restarting")
        return list(self.sessions)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as harness:
        yield harness


class Rig:
    def __init__(self, h: Harness, policy: SweepPolicy | None = None, *,
                 idle_sessions: Callable[[int], Awaitable[int]] | None = None) -> None:
        self.view = SessionsView()
        self.send, self.stops = trio.open_memory_channel[SessionsMessage](100)
        self.records = DeliveryRecords(h.store)
        self.sweeper = Sweeper(scheduler=h.scheduler, questions=h.questions,
                               records=self.records, sessions=self.view,
                               sessions_mailbox=self.send, queues=h.queues, events=h.events,
                               policy=policy, clock=h.clock, idle_sessions=idle_sessions)

    def stopped(self) -> list[StopSession]:
        out: list[StopSession] = []
        while True:
            try:
                message = self.stops.receive_nowait()
            except trio.WouldBlock:
                return out
            assert isinstance(message, StopSession)
            out.append(message)


async def test_a_stale_heartbeat_restarts_the_session_once_per_cooldown(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    rig = Rig(h)
    now = h.clock.now_us()
    rig.view.sessions = [
        health("ses_" + "1" * 16, heartbeat_at=now - 121 * SECOND),
        health("ses_" + "2" * 16, heartbeat_at=now - 30 * SECOND),
        health("ses_" + "3" * 16, running=False, heartbeat_at=now - 3600 * SECOND),
        health("ses_" + "4" * 16, heartbeat_at=None),  # not yet written: not judged
    ]
    await rig.sweeper.sweep()
    (stop,) = rig.stopped()
    assert (stop.session_id, stop.restart) == ("ses_" + "1" * 16, True)
    assert "heartbeat" in stop.reason
    (event,) = h.events.of(SessionStuck)
    assert event.session_id == stop.session_id and event.heartbeat_age_s == 121

    mock_clock.jump(60)  # still stale, but just restarted: leave it be
    rig.view.sessions[1] = health("ses_" + "2" * 16, heartbeat_at=h.clock.now_us())
    await rig.sweeper.sweep()
    assert rig.stopped() == []
    mock_clock.jump(61)
    rig.view.sessions[1] = health("ses_" + "2" * 16, heartbeat_at=h.clock.now_us())
    await rig.sweeper.sweep()
    assert [s.session_id for s in rig.stopped()] == ["ses_" + "1" * 16]


async def test_a_new_sandbox_is_judged_from_its_own_launch(h: Harness) -> None:
    """A sandbox just relaunched (after a crash, a kill, a plane restart) inherits the
    last heartbeat and claim its predecessor left; it is not stuck until it has had
    the whole timeout of its own, however slow the runtime is to start."""
    rig = Rig(h)
    now = h.clock.now_us()
    fresh, old = "ses_" + "5" * 16, "ses_" + "6" * 16
    rig.view.sessions = [
        health(fresh, heartbeat_at=now - 300 * SECOND, oldest_claim_at=now - 20 * MINUTE,
               launched_at=now - 10 * SECOND),
        health(old, heartbeat_at=now - 300 * SECOND, launched_at=now - 200 * SECOND),
    ]
    await rig.sweeper.sweep()
    assert [s.session_id for s in rig.stopped()] == [old]


async def test_a_sandbox_that_never_beats_is_stuck_from_its_launch(h: Harness) -> None:
    """Frozen while it boots, before its first heartbeat: no beat ever arrives, and
    the timeout runs from the launch (found by the chaos harness under runsc, where
    boot takes long enough for a SIGSTOP to land in it)."""
    rig = Rig(h)
    now = h.clock.now_us()
    silent, booting = "ses_" + "7" * 16, "ses_" + "8" * 16
    rig.view.sessions = [health(silent, launched_at=now - 121 * SECOND),
                         health(booting, launched_at=now - 5 * SECOND)]
    await rig.sweeper.sweep()
    (stop,) = rig.stopped()
    assert stop.session_id == silent and "no heartbeat for 121s" in stop.reason


async def test_a_long_tool_call_is_left_alone_within_its_declared_timeout(
        h: Harness) -> None:
    rig = Rig(h)
    now = h.clock.now_us()
    busy, idle_claim, over, immortal = ("ses_" + c * 16 for c in "abcd")
    rig.view.sessions = [
        # A 30-minute tool, 15 minutes in, heartbeat fresh: busy, not stuck.
        health(busy, heartbeat_at=now, oldest_claim_at=now - 15 * MINUTE,
               tool="build", tool_timeout_ms=30 * 60_000),
        # No tool declared, a message claimed for 11 minutes: stuck.
        health(idle_claim, heartbeat_at=now, oldest_claim_at=now - 11 * MINUTE),
        # Past its own declared timeout: stuck.
        health(over, heartbeat_at=now, oldest_claim_at=now - 31 * MINUTE,
               tool="build", tool_timeout_ms=30 * 60_000),
        # A declared timeout of decades is capped (at four hours by default).
        health(immortal, heartbeat_at=now, oldest_claim_at=now - 5 * 60 * MINUTE,
               tool="sleep", tool_timeout_ms=10**12),
    ]
    await rig.sweeper.sweep()
    assert sorted(s.session_id for s in rig.stopped()) == sorted([idle_claim, over, immortal])
    assert all(e.session_id != busy for e in h.events.of(SessionStuck))


async def test_the_loop_fires_due_tasks_and_survives_a_failing_step(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    rig = Rig(h, SweepPolicy(interval=10.0))
    rig.view.broken = True  # two of the four steps fail on every pass
    start = h.clock.now_us()
    await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                               request=ScheduleTask("tick", start + 25 * SECOND, "1m",
                                                    None, None))
    fired_by_pass = []
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.sweeper.run)
        for n in range(1, 11):  # passes at 0, 10, ... 90 s
            await h.events.wait_for(SweepReport, n)
            fired_by_pass.append(h.events.of(SweepReport)[-1].tasks_fired)
            mock_clock.jump(10)
        nursery.cancel_scope.cancel()
    # Slots at 25 s and 85 s: fired by the passes at 30 s and 90 s, once each.
    assert fired_by_pass == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    rows = [m for m in h.inbound(session.id) if m.kind is MessageKind.TASK]
    assert len(rows) == 2
    assert {e.step for e in h.events.of(SweepFailed)} == {"stuck", "retention"}


async def test_retention_prunes_what_is_old_and_keeps_what_is_not(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    rig = Rig(h, SweepPolicy(inbound_retention=86_400.0, records_retention=30 * 86_400.0))
    rig.view.sessions = [health(session.id, heartbeat_at=h.clock.now_us())]
    old = await h.queues.enqueue(session.id, [NewInboundMessage(
        id=MessageId(f"old-{n}"), kind=MessageKind.CHAT, content="x") for n in range(3)])
    writer = await h.queues.inbound(session.id)
    writer.apply_acks([ProcessingAck(m.id, AckStatus.COMPLETED, 0) for m in old],
                      now=h.clock.now_us())
    await rig.records.finish(f"{session.id}:done", session.id, RecordStatus.DELIVERED,
                             at=h.clock.now_us())
    await rig.records.note_retry(f"{session.id}:busy", session.id, attempts=1, error="x",
                                 at=h.clock.now_us())
    asked = await h.questions.ask(session_id=session.id, agent_group_id="g1",
                                  request=AskUserQuestion("Ok?", ("yes",), False))
    await h.questions.answer(asked.id, "yes", "local:alice")
    open_question = await h.questions.ask(session_id=session.id, agent_group_id="g1",
                                          request=AskUserQuestion("And?", (), True))
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("t", None, "daily", None, None))
    await h.scheduler.control(session_id=session.id,
                              request=TaskControl("cancel_task", task.id, None, None, None))

    mock_clock.jump(2 * 86_400)
    fresh = await h.queues.enqueue(session.id, [NewInboundMessage(
        id=MessageId("fresh"), kind=MessageKind.CHAT, content="y")])
    writer.apply_acks([ProcessingAck(fresh[0].id, AckStatus.COMPLETED, 0)],
                      now=h.clock.now_us())
    report = await rig.sweeper.sweep()
    assert report.inbound_pruned == 3 and report.records_pruned == 0
    assert writer.statuses([MessageId("fresh")]) != {}  # inside the window

    mock_clock.jump(30 * 86_400)
    report = await rig.sweeper.sweep()
    assert (report.records_pruned, report.questions_pruned, report.tasks_pruned) == (1, 1, 1)
    kept = await rig.records.lookup([f"{session.id}:done", f"{session.id}:busy"])
    assert list(kept) == [f"{session.id}:busy"]  # a retry in progress is never pruned
    assert [q.id for q in await h.questions.pending()] == [open_question.id]


async def test_idle_sessions_are_deleted_only_under_a_session_retention(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    asked: list[int] = []

    async def delete_idle(before_us: int) -> int:
        await trio.lowlevel.checkpoint()
        asked.append(before_us)
        return 2

    kept = Rig(h, idle_sessions=delete_idle)
    assert (await kept.sweeper.sweep()).sessions_deleted == 0 and asked == []
    rig = Rig(h, SweepPolicy(session_retention=7 * 86_400.0), idle_sessions=delete_idle)
    report = await rig.sweeper.sweep()
    assert report.sessions_deleted == 2
    assert asked == [h.clock.now_us() - 7 * 86_400 * 1_000_000]
