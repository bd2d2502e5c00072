"""A session whose inbound queue is at its byte cap: every writer's caller refuses only
that session's rows, reports them, and resumes once pruning makes room. Real host.db,
real key store, real capped inbound files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from ironclaw.contract.actions import ScheduleTask
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.queue import QueueFull
from ironclaw.contract.rows import NewInboundMessage, ProcessingAck
from ironclaw.host.channels import InboundEvent, InboundRefused
from ironclaw.host.channels.state import ChannelState
from ironclaw.host.delivery import (
    AgentMessageSent,
    DeadLettered,
    DeliveryRejected,
    DeliveryRetrying,
)
from ironclaw.host.events import InboundFull
from ironclaw.host.inbound import Waker
from ironclaw.host.inbound.router import Decision, Router
from ironclaw.host.mailboxes import Wake
from ironclaw.host.registry import Role, RoleGrant, Wiring
from ironclaw.host.scheduling.scheduler import TaskFireFailed
from ironclaw.runtime import Reply
from tests.support.delivery import Harness, open_harness

CAP = 1024 * 1024
BIG = "y" * (200 * 1024)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path, max_inbound_bytes=CAP) as harness:
        yield harness


async def fill(h: Harness, session_id: str) -> list[str]:
    """Write task rows straight into the session's inbound until the cap refuses even
    a one-character row."""
    writer = await h.queues.inbound(session_id)

    def write_until_full() -> list[str]:
        ids = []
        # Big rows first, then ever smaller ones, so not even a short chat fits.
        for text in (BIG, BIG[:8192], BIG[:512], "y"):
            while True:
                try:
                    ids.append(writer.enqueue(NewInboundMessage(
                        id=new_message_id(), kind=MessageKind.TASK, content=text)).id)
                except QueueFull:
                    break
        return ids

    return await trio.to_thread.run_sync(write_until_full)


async def drain(h: Harness, session_id: str, ids: list[str]) -> None:
    """What the session does when it works through its queue: acks, then the prune."""
    writer = await h.queues.inbound(session_id)
    acks = [ProcessingAck(message_id=i, status=AckStatus.COMPLETED,  # type: ignore[arg-type]
                          status_changed=1) for i in ids]
    stamp = h.clock.now_us()
    await trio.to_thread.run_sync(lambda: writer.apply_acks(acks, now=stamp - 1))
    assert await trio.to_thread.run_sync(
        lambda: writer.prune(finished_before=stamp)) == len(ids)


async def test_router_refuses_a_chat_only_a_full_session_would_take(h: Harness) -> None:
    await h.registry.grant_role(RoleGrant("local:alice", Role.OWNER))
    wakes_send, _wakes = trio.open_memory_channel[Wake](100)
    router = Router(h.registry, h.queues, Waker(wakes_send), h.events)
    full = await h.session("g1", "chat-full")
    other = await h.session("g2", "chat-ok")
    for wiring, group, chat in (("w1", "g1", "chat-full"), ("w2", "g2", "chat-ok")):
        messaging = await h.registry.ensure_messaging_group("local", chat)
        await h.registry.put_wiring(Wiring(id=wiring, messaging_group_id=messaging.id,
                                           agent_group_id=group))
    filled = await fill(h, full.id)

    def event(chat: str) -> InboundEvent:
        return InboundEvent(channel="local", instance="", platform_id=chat,
                            sender_handle="alice", text="hello", mentioned=True,
                            accepted=Reply())

    refused = [event("chat-full") for _ in range(3)]
    for each in refused:
        (outcome,) = await router.route(each)
        assert (outcome.decision, outcome.session_id) == (Decision.INBOUND_FULL, full.id)
        assert each.accepted is not None and each.accepted.answered
        with pytest.raises(InboundRefused, match="the session's inbound queue is full"):
            await each.accepted.wait()
    # Reported once, not once per refused row: a flood cannot flood the event stream.
    (report,) = h.events.of(InboundFull)
    assert (report.session_id, report.cap_bytes) == (full.id, CAP)
    assert report.used_bytes > CAP

    bystander = event("chat-ok")
    (outcome,) = await router.route(bystander)
    assert outcome.decision is Decision.ENGAGED and outcome.session_id == other.id
    assert bystander.accepted is not None and bystander.accepted.answered
    await bystander.accepted.wait()  # accepted: no InboundRefused

    # A channel that acknowledges to its platform never marks a refused event seen.
    state = ChannelState(h.store, "local", "")
    router_send, router_receive = trio.open_memory_channel[InboundEvent](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(router.run, router_receive)
        with pytest.raises(InboundRefused):
            await state.hand_over(router_send, event("chat-full"), event_id="ev-1",
                                  raise_refused=True)
        assert not await state.seen("ev-1")
        assert not await state.hand_over(router_send, event("chat-full"), event_id="ev-2")
        assert not await state.seen("ev-2")

        # Once the session has worked through its queue, the same event is taken.
        await drain(h, full.id, filled)
        assert await state.hand_over(router_send, event("chat-full"), event_id="ev-1",
                                     raise_refused=True)
        assert await state.seen("ev-1")
        router_send.close()
    assert [m.content for m in h.inbound(full.id)] == ["hello"]


async def test_a_due_task_into_a_full_inbound_skips_its_slot(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    filled = await fill(h, session.id)
    task = await h.scheduler.schedule(session_id=session.id, agent_group_id="g1",
                                      request=ScheduleTask("stretch", None, "hourly",
                                                           None, None))
    assert await h.scheduler.fire_due() == 0
    (failed,) = h.events.of(TaskFireFailed)
    assert (failed.task_id, failed.reason) == (task.id, "QueueFull")
    stored = await h.scheduler.get(task.id)
    assert stored.fired_count == 0
    assert stored.next_run_at == (task.next_run_at or 0) + int(3600 * 1e6)
    # Skipped, not retried: the next sweep finds nothing due.
    assert await h.scheduler.fire_due() == 0
    assert len(h.events.of(TaskFireFailed)) == 1

    mock_clock.jump(3600)
    assert await h.scheduler.fire_due() == 0  # still full: the next slot is skipped too
    reports = h.events.of(InboundFull)
    assert [r.refused for r in reports] == [1, 1]  # a minute apart: reported each time

    await drain(h, session.id, filled)
    mock_clock.jump(3600)
    assert await h.scheduler.fire_due() == 1
    assert [m.content for m in h.inbound(session.id)] == ["stretch"]


async def test_a_message_to_a_full_agent_is_dead_lettered_at_once(h: Harness) -> None:
    sender = await h.session("g1", "chat-1")
    target = await h.session("g2", "chat-2")
    await h.grant("g1", "helper", type="agent", target_agent_group_id="g2")
    filled = await fill(h, target.id)
    delivery = await h.start_delivery()
    sent = h.row("hello agent", destination="helper")
    await delivery.submit(h.batch(sender, [sent]))
    (dead,) = await h.events.wait_for(DeadLettered)
    assert (dead.session_id, dead.attempts) == (sender.id, 1)
    assert "inbound is full" in dead.reason
    await h.progress.wait_through(sender.id, sent.seq)
    assert h.events.of(DeliveryRetrying) == []
    assert len(h.inbound(target.id)) == len(filled)
    assert [r.session_id for r in h.events.of(InboundFull)] == [target.id]

    await drain(h, target.id, filled)
    again = h.row("after the prune", destination="helper")
    await delivery.submit(h.batch(sender, [again]))
    await h.events.wait_for(AgentMessageSent)
    assert [m.content.split("\n")[-1] for m in h.inbound(target.id)] == ["after the prune"]


async def test_a_list_tasks_answer_that_does_not_fit_is_refused(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    await fill(h, session.id)
    delivery = await h.start_delivery()
    row = h.row(json.dumps({"action": "list_tasks"}), kind=MessageKind.SYSTEM)
    await delivery.submit(h.batch(session, [row]))
    await h.progress.wait_through(session.id, row.seq)
    (rejected,) = h.events.of(DeliveryRejected)
    assert "QueueFull" in rejected.reason
    assert h.events.of(DeliveryRetrying) == []
