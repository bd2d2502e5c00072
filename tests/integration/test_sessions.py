"""Session actors end to end, below delivery: a real sandbox_agent subprocess (the
``process`` runtime), real encrypted queues, the real model proxy serving the mock
model, the real doorbell and outbound tail."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.contract.enums import MessageKind, SessionMode
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.rows import NewInboundMessage, OutboundMessage
from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.isolation import InsecureRuntimeRefused, ProcessIsolator
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.mailboxes import StopSession, TailBatch
from ironclaw.host.modelproxy import Credentials, ModelProxy
from ironclaw.host.registry import AgentGroup, ContainerStatus, Registry
from ironclaw.host.sessions import SessionDeps, SessionProgress, Sessions, SessionSettings
from ironclaw.host.store import open_host_store
from ironclaw.runtime import EventBus


@attrs.define
class CollectingDelivery:
    """Stands in for the delivery actor: records batches and reports them handled."""

    progress: SessionProgress
    batches: list[TailBatch] = attrs.Factory(list)
    arrived: trio.Event = attrs.Factory(trio.Event)

    async def submit(self, batch: TailBatch) -> None:
        self.batches.append(batch)
        await self.progress.handled_through(batch.session_id, batch.cursor)
        self.arrived.set()
        self.arrived = trio.Event()

    def replies(self) -> list[OutboundMessage]:
        return [m for b in self.batches for m in b.messages]

    async def wait_for(self, count: int) -> list[OutboundMessage]:
        """Callers bound the wait with trio.fail_after."""
        while len(self.replies()) < count:
            await self.arrived.wait()
        return self.replies()


@attrs.define
class Plane:
    registry: Registry
    queues: SessionQueues
    sessions: Sessions
    delivery: CollectingDelivery
    bus: EventBus
    session_id: str

    async def say(self, text: str) -> str:
        (row,) = await self.queues.enqueue(self.session_id, [NewInboundMessage(
            id=new_message_id("in"), kind=MessageKind.CHAT, content=text)])
        await self.sessions.wake(self.session_id)
        return row.id


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    state = tmp_path / "state"
    keystore = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    bus = EventBus()
    async with open_host_store(state / "host.db", secrets.token_bytes(32)) as store, \
            trio.open_nursery() as nursery:
        registry = Registry(store)
        await registry.put_agent_group(AgentGroup(id="demo", name="Demo", folder="demo"))
        mg = await registry.ensure_messaging_group("local", "conv-1")
        session = await registry.resolve_session("demo", mg.id, None, SessionMode.SHARED)
        queues = SessionQueues(state, keystore)
        progress = SessionProgress(store, queues)
        proxy = ModelProxy(events=bus, credentials=Credentials())
        await nursery.start(proxy.run)
        delivery = CollectingDelivery(progress)
        key_dir = tmp_path / "keys"
        deps = SessionDeps(
            state_dir=state, registry=registry, queues=queues,
            isolator=ProcessIsolator(allow_insecure=True), models=proxy,
            credentials=Credentials(), delivery=delivery, progress=progress, events=bus,
            settings=SessionSettings(key_dir=key_dir, idle_timeout_s=600,
                                     safety_poll_s=0.5, heartbeat_interval_s=0.5))
        sessions = Sessions(deps)
        await nursery.start(sessions.run)
        yield Plane(registry, queues, sessions, delivery, bus, session.id)
        nursery.cancel_scope.cancel()
        await queues.aclose()


def test_process_runtime_refuses_without_the_flag() -> None:
    with pytest.raises(InsecureRuntimeRefused):
        ProcessIsolator(allow_insecure=False)


async def test_a_message_is_answered_by_a_real_agent(plane: Plane) -> None:
    asked = await plane.say("hello")
    with trio.fail_after(60):
        (reply,) = await plane.delivery.wait_for(1)
    assert reply.content == "echo: hello" and reply.in_reply_to == asked
    session = await plane.registry.get_session(plane.session_id)
    assert session.container_status is ContainerStatus.RUNNING
    # The ack came back through the tail and advanced the host's own row.
    writer = await plane.queues.inbound(plane.session_id)
    for _ in range(600):
        if (await trio.to_thread.run_sync(writer.statuses, [asked]))[asked] == "completed":
            break
        await trio.sleep(0.05)
    else:
        raise AssertionError("the completed ack never reached the host's inbound row")
    # The key file lives outside the state dir, readable only by its owner.
    key_file = next((Path(plane.queues.paths(plane.session_id).inbound_dir).parents[3])
                    .glob("keys/*/session.key"))
    assert oct(key_file.stat().st_mode & 0o777) == "0o400"


async def test_a_second_message_rides_the_doorbell(plane: Plane) -> None:
    await plane.say("one")
    with trio.fail_after(60):
        await plane.delivery.wait_for(1)
    actor = plane.sessions.actor(plane.session_id)
    assert actor is not None
    await plane.say("two")
    with trio.fail_after(60):
        replies = await plane.delivery.wait_for(2)
    assert [r.content for r in replies] == ["echo: one", "echo: two"]


async def test_killed_agent_is_restarted_and_loses_nothing(plane: Plane) -> None:
    await plane.say("before")
    with trio.fail_after(60):
        await plane.delivery.wait_for(1)
    health = plane.sessions.health()
    assert health and health[0].running
    # Find the agent's pid through the launch event and kill it hard.
    async with plane.bus.subscribe("sandbox.*", since=0) as events:
        pid = None
        with trio.fail_after(10):
            async for item in events:
                event = getattr(item, "event", None)
                if event is not None and event.type == "sandbox.launched":
                    pid = event.pid
                    break
    assert pid is not None
    os.kill(pid, 9)
    await plane.say("after")
    with trio.fail_after(90):
        replies = await plane.delivery.wait_for(2)
    assert [r.content for r in replies] == ["echo: before", "echo: after"]


async def test_stop_and_restart_keeps_the_cursor(plane: Plane) -> None:
    await plane.say("first")
    with trio.fail_after(60):
        await plane.delivery.wait_for(1)
    await plane.sessions.mailbox.send(StopSession(plane.session_id, "test", restart=False))
    with trio.fail_after(30):
        await plane.sessions.wait_retired(plane.session_id)
    await plane.say("second")
    with trio.fail_after(60):
        replies = await plane.delivery.wait_for(2)
    # The restarted tail began at the durable cursor: "first" was not handed over again.
    assert [r.content for r in replies] == ["echo: first", "echo: second"]


async def _nth_launch(plane: Plane, n: int) -> int:
    """The pid of the session's ``n``-th launch (1-based), once it has happened."""
    seen = 0
    async with plane.bus.subscribe("sandbox.launched", since=0) as events:
        with trio.fail_after(60):
            async for item in events:
                event = getattr(item, "event", None)
                if event is not None and event.type == "sandbox.launched":
                    seen += 1
                    if seen == n:
                        return int(event.pid)
    raise AssertionError("the event bus closed")


def _launched_config(plane: Plane) -> AgentConfig:
    run_dir = Path(plane.queues.paths(plane.session_id).inbound_dir).parent / "run"
    return AgentConfig.load(run_dir / "agent.json")


async def test_the_agent_is_told_whether_its_last_run_was_its_own_fault(
        plane: Plane) -> None:
    """A first launch follows a run the host ended (or a plane that died): blameless.
    A relaunch after the agent died on its own, or after the sweeper put a stuck one
    down (a stop with restart), is not: its unfinished turn counts."""
    await plane.say("one")
    with trio.fail_after(60):
        await plane.delivery.wait_for(1)
    first = await _nth_launch(plane, 1)
    assert _launched_config(plane).previous_run_blameless
    os.kill(first, 9)  # dies on its own: the supervisor relaunches
    await _nth_launch(plane, 2)
    assert not _launched_config(plane).previous_run_blameless
    await plane.sessions.mailbox.send(StopSession(plane.session_id, "stuck", restart=True))
    await _nth_launch(plane, 3)
    assert not _launched_config(plane).previous_run_blameless
    await plane.sessions.mailbox.send(StopSession(plane.session_id, "idle", restart=False))
    with trio.fail_after(30):
        await plane.sessions.wait_retired(plane.session_id)
    await plane.say("two")
    await _nth_launch(plane, 4)
    assert _launched_config(plane).previous_run_blameless
    with trio.fail_after(60):
        replies = await plane.delivery.wait_for(2)
    assert [r.content for r in replies] == ["echo: one", "echo: two"]
