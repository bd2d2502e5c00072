"""A flood of scheduled tasks fills one session's inbound queue up to its byte cap,
through the whole control plane (process runtime, real sandbox_agent subprocesses,
real capped inbound files), while a bystander session of the same agent keeps
answering. The flooded session's chats are refused to the channel, its task slots are
skipped, and the host reports it; nothing crashes."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.contract.layout import SessionLayout
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.channels import InboundRefused
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_GROUP
from ironclaw.host.events import InboundFull
from ironclaw.host.isolation.volumes import DiskCaps
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import Wiring
from ironclaw.host.scheduling import TaskFireFailed
from ironclaw.runtime.eventbus import Envelope
from tests.support.plane import dev_plane_config

CAP = 1024 * 1024
BYSTANDER = "bystander"
PROMPT = "flood " + "z" * (15 * 1024)


def config(tmp_path: Path) -> ControlPlaneConfig:
    return dev_plane_config(tmp_path / "state", tmp_path / "keys",
                            sandbox_disk=DiskCaps(inbound_bytes=CAP))


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config(tmp_path),
                                                   credentials=Credentials()).run)
        yield handles
        nursery.cancel_scope.cancel()


async def ask(plane: ControlPlaneHandles, conversation: str, text: str) -> str:
    """Post ``text`` and return the agent's answer to it (an answer to an earlier
    message that arrives first is passed over)."""
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, "operator", text)
    with trio.fail_after(60):
        while True:
            reply = await plane.local.wait_for_reply(conversation, after_index=mark)
            if reply.text == f"echo: {text}":
                return reply.text
            mark = reply.index


async def flood(plane: ControlPlaneHandles, later: dt.datetime) -> int:
    """Ask the demo session for one big task after another until a chat is refused;
    return how many were asked for. Every other task is due at once (task rows and the
    chats asking for them fill the queue together); the rest come due ``later``, after
    the queue is full."""
    for asked in range(500):
        due = dt.datetime.now(dt.UTC) if asked % 2 == 0 else later
        directive = json.dumps({"prompt": PROMPT, "run_at": due.isoformat()})
        try:
            await plane.local.post(DEMO_CONVERSATION, "operator",
                                   f"tool:schedule_task {directive}")
        except InboundRefused:
            return asked
        await trio.sleep(0.05)  # let the agent take its turns
    raise AssertionError("the flooded inbound was never refused")


async def test_a_task_flood_fills_only_its_own_inbound(
        plane: ControlPlaneHandles, tmp_path: Path) -> None:
    messaging = await plane.registry.ensure_messaging_group("local", BYSTANDER)
    await plane.registry.put_messaging_group(
        attrs.evolve(messaging, unknown_sender_policy=UnknownSenderPolicy.PUBLIC))
    await plane.registry.put_wiring(Wiring(
        id="bystander-local", messaging_group_id=messaging.id, agent_group_id=DEMO_GROUP,
        engage_mode=EngageMode.PATTERN, pattern="."))
    assert await ask(plane, BYSTANDER, "before") == "echo: before"

    answered: list[str] = []
    async with plane.events.subscribe("session.inbound_full", since=0) as full_events, \
            plane.events.subscribe("task.fire_failed", since=0) as skipped:
        async with trio.open_nursery() as nursery:
            async def bystander() -> None:
                for turn in range(1000):
                    answered.append(await ask(plane, BYSTANDER, f"ping {turn}"))

            nursery.start_soon(bystander)
            later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
            asked = await flood(plane, later)
            nursery.cancel_scope.cancel()
        assert asked > 10
        with trio.fail_after(30):
            reported = await full_events.receive()
        # The skipped slots: tasks that came due after the queue filled.
        with trio.fail_after(60):
            skip = await skipped.receive()
    assert isinstance(reported, Envelope) and isinstance(skip, Envelope)
    report, failure = reported.event, skip.event
    assert isinstance(report, InboundFull) and isinstance(failure, TaskFireFailed)
    assert failure.reason == "QueueFull"
    sessions = {s.messaging_group_id: s.id for s in await plane.registry.list_sessions()}
    demo_group = await plane.registry.ensure_messaging_group("local", DEMO_CONVERSATION)
    flooded = sessions[demo_group.id]
    assert (report.session_id, report.cap_bytes) == (flooded, CAP)
    assert failure.session_id == flooded
    # Task rows took part in filling it: some fired before it was full.
    fired = 0
    async with plane.events.subscribe("task.fired", since=0) as fired_events:
        while True:
            try:
                fired_events.receive_nowait()
            except trio.WouldBlock:
                break
            fired += 1
    assert fired >= 1

    # The bystander answered all along, and still does; its inbound is far from full.
    assert answered == [f"echo: ping {turn}" for turn in range(len(answered))]
    assert len(answered) >= 1
    assert await ask(plane, BYSTANDER, "after") == "echo: after"
    # The flooded session is refused, not acknowledged, and its file stayed in its cap.
    with pytest.raises(InboundRefused):
        await plane.local.post(DEMO_CONVERSATION, "operator", PROMPT)
    assert PROMPT not in [e.text for e in plane.local.transcript(DEMO_CONVERSATION)]
    inbound = SessionLayout.under(tmp_path / "state", flooded).queues.inbound_db
    assert os.stat(inbound).st_size <= CAP
    bystander_db = SessionLayout.under(tmp_path / "state",
                                       sessions[messaging.id]).queues.inbound_db
    assert os.stat(bystander_db).st_size < CAP // 4
