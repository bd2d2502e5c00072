"""A compromised agent, against the whole control plane.

Session A's agent is assumed compromised: it holds its outbound key and writes what
it likes (here: malformed actions, unknown actions, privileged requests, forbidden
destinations, a flood). Session B is an innocent conversation on the same host.
The plane must keep serving B promptly, apply nothing privileged, and report every
rejection as an event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, EngageMode, MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.queue import OutboundWriter
from ironclaw.contract.rows import MAX_CONTENT_BYTES, NewOutboundMessage
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_TOOLS
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import Wiring

from ..e2e.plane_child import config

FLOOD = 1500
OTHER = "other"


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(
            config(tmp_path / "state", tmp_path / "keys"), credentials=Credentials()).run)
        group = await handles.registry.ensure_messaging_group("local", OTHER)
        await handles.registry.put_wiring(Wiring(
            id="other-local", messaging_group_id=group.id, agent_group_id="demo",
            engage_mode=EngageMode.PATTERN, pattern="."))
        yield handles
        nursery.cancel_scope.cancel()


def hostile_rows() -> list[NewOutboundMessage]:
    def system(content: str) -> NewOutboundMessage:
        return NewOutboundMessage(id=new_message_id("evil"), kind=MessageKind.SYSTEM,
                                  content=content)

    def chat(text: str, **target: str) -> NewOutboundMessage:
        return NewOutboundMessage(id=new_message_id("evil"), kind=MessageKind.CHAT,
                                  content=text, **target)  # type: ignore[arg-type]

    return [
        system("{not json"),
        system("[" * 5000),
        system(json.dumps({"action": "become_root", "payload": {"uid": 0}})),
        system(json.dumps({"action": "mounts", "payload": [{"source": "/"}]})),
        system(json.dumps({"action": "create_agent", "payload": {"name": "evil"}})),
        system(json.dumps({"action": "ask_user_question", "question": 7})),
        chat("exfiltrate", destination="../../etc/passwd"),
        chat("to another chat", channel_type="local", platform_id=OTHER),
        chat("x" * (MAX_CONTENT_BYTES - 16)),
    ]


async def test_compromised_agent_cannot_starve_or_escalate(plane: ControlPlaneHandles
                                                          ) -> None:
    local = plane.local
    mark = local.cursor(DEMO_CONVERSATION)
    await local.post(DEMO_CONVERSATION, "operator", "hello")
    with trio.fail_after(60):
        await local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
    (session_a,) = await plane.registry.list_sessions()
    keys = await trio.to_thread.run_sync(plane.sessions._deps.queues.keys, session_a.id)
    outbound = plane.sessions._deps.queues.paths(session_a.id).outbound_db
    bad = hostile_rows()
    flood = [NewOutboundMessage(id=new_message_id("flood"), kind=MessageKind.CHAT,
                                content=f"spam {i}") for i in range(FLOOD)]

    def write_as_the_agent() -> None:
        with OutboundWriter(outbound, keys.outbound) as writer, writer.batch() as batch:
            for row in bad + flood:
                batch.send(row)

    async with plane.events.subscribe(["delivery.rejected", "delivery.denied",
                                       "delivery.dead_lettered"],
                                      buffer_size=10_000) as rejections:
        await trio.to_thread.run_sync(write_as_the_agent)
        # Session B, a separate conversation, must be served while A's flood drains.
        other_mark = local.cursor(OTHER)
        await local.post(OTHER, "operator", "are you there?")
        with trio.fail_after(60):
            reply = await local.wait_for_reply(OTHER, after_index=other_mark)
        assert reply.text == "echo: are you there?"
        spam_so_far = sum(1 for e in local.transcript(DEMO_CONVERSATION)
                          if e.text.startswith("spam "))
        assert spam_so_far < FLOOD, "B waited behind A's whole flood"
        # Every bad row is refused, each as its own typed event: three malformed
        # actions rejected, two forbidden targets denied, and the oversized reply
        # dead-lettered (the local channel caps message length).
        seen: list[str] = []
        with trio.fail_after(60):
            while len(seen) < 6:
                item = await rejections.receive()
                seen.append(item.type)  # type: ignore[union-attr]
        assert sorted(seen) == sorted(["delivery.rejected"] * 3 + ["delivery.denied"] * 2
                                      + ["delivery.dead_lettered"])
    # The oversized-but-legal message and the flood are A's own chat: delivered to A.
    # (The local transcript keeps the last 1000 entries, hence the 900.)
    with trio.fail_after(120):
        index = -1
        while sum(1 for e in local.transcript(DEMO_CONVERSATION)
                  if e.text.startswith("spam ")) < min(FLOOD, 900):
            index = (await local.wait_for_reply(DEMO_CONVERSATION, after_index=index)).index
    # Nothing escaped into B's chat, and nothing privileged was applied.
    assert not any("exfiltrate" in e.text or "another chat" in e.text
                   for e in local.transcript(OTHER))
    history = await plane.gateway.history()
    assert all(c.status is not ChangeStatus.APPLIED for c in history)
    assert {c.change.kind.value for c in history} >= {"mounts", "create_agent"}
    group = await plane.registry.get_agent_group("demo")
    assert group.enabled_tools == DEMO_TOOLS and group.name == "Demo"
