"""MCP end to end, through the real control plane: local channel -> router -> encrypted
queues -> a real sandbox_agent subprocess (``process`` runtime) whose mock model calls
``time__get_current_time`` -> mcp.sock -> the MCP broker -> the real
``mcp-server-time`` from PyPI -> back to the chat. The grant comes from an
``mcp_access`` change a human approves at the gateway; before it the agent has no such
tool and its session no socket, and a server in the catalogue but not in the grant
stays invisible. Under runsc and runc the same path runs with the sandbox launcher."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.contract.layout import MCP_SOCKET, SessionLayout
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.mcp import McpConfig
from ironclaw.host.modelproxy import Credentials
from tests.support.mcp import hostile_server, time_server
from tests.support.plane import dev_plane_config

OWNER = Principal("operator", frozenset({"owner"}))
NOW_IN_TOKYO = "tool:time__get_current_time " + json.dumps({"timezone": "Asia/Tokyo"})


@pytest.fixture
async def plane() -> AsyncIterator[ControlPlaneHandles]:
    base = Path(tempfile.mkdtemp(prefix="mcpe-", dir="/tmp"))
    try:
        async with trio.open_nursery() as nursery:
            config = dev_plane_config(base / "state", base / "keys", mcp=McpConfig(
                servers=(time_server(), hostile_server())))
            handles = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            demo = await handles.registry.get_agent_group(DEMO_GROUP)
            await handles.registry.put_agent_group(attrs.evolve(demo, enabled_tools=()))
            yield handles
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(DEMO_CONVERSATION)
    await plane.local.post(DEMO_CONVERSATION, "operator", text)
    with trio.fail_after(60):
        return (await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)).text


async def mcp_socket(plane: ControlPlaneHandles) -> Path:
    (session,) = await plane.registry.list_sessions()
    return SessionLayout.under(plane.config.state_dir, session.id).socket_dir / MCP_SOCKET


async def approve(plane: ControlPlaneHandles, servers: dict[str, Any]) -> None:
    """Submit and approve an mcp_access change, and wait for the respawn it causes."""
    async with plane.events.subscribe("session.started") as started:
        stored = await plane.gateway.submit("mcp_access", DEMO_GROUP, {"servers": servers},
                                            requested_by=OWNER, reason="e2e")
        assert stored.status is ChangeStatus.PENDING  # never approved by policy
        decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE,
                                             OWNER)
        assert decided.status is ChangeStatus.APPLIED
        with trio.fail_after(30):
            await started.receive()


async def test_the_agent_asks_a_granted_server_the_time_and_loses_it_on_revocation(
        plane: ControlPlaneHandles) -> None:
    # Nothing granted: no tool, no socket, no server ran.
    assert "unknown tool 'time__get_current_time'" in await ask(plane, NOW_IN_TOKYO)
    assert not (await mcp_socket(plane)).exists()

    await approve(plane, {"time": "*"})
    assert (await mcp_socket(plane)).is_socket()
    reply = await ask(plane, NOW_IN_TOKYO)
    assert reply.startswith("tool result: "), reply
    answer = json.loads(reply.removeprefix("tool result: "))
    assert answer["timezone"] == "Asia/Tokyo"
    assert answer["datetime"].endswith("+09:00")

    # In the catalogue, not in the grant: the agent cannot even name it.
    hidden = await ask(plane, 'tool:hostile__echo {"text": "hi"}')
    assert "unknown tool 'hostile__echo'" in hidden

    # Narrowed to the other tool: the next call is refused.
    await approve(plane, {"time": ["convert_time"]})
    assert "unknown tool 'time__get_current_time'" in await ask(plane, NOW_IN_TOKYO)

    # Audited: the server, the tool, sizes and outcome; never what was asked or answered.
    entries = await plane.audit.tail(500)
    calls = [e.fields for e in entries if e.kind == "mcp.call"
             and e.fields["operation"] == "call"]
    assert [(c["server"], c["tool"], c["outcome"]) for c in calls] == [
        ("time", "get_current_time", "ok")]
    assert calls[0]["response_bytes"] > 0
    exported = b"".join([line async for line in plane.audit.export()])
    assert b"Asia/Tokyo" not in exported
    servers = [e.fields for e in entries if e.kind == "mcp.server"]
    assert ("time", "started") in [(s["server"], s["state"]) for s in servers]
    assert "hostile" not in [s["server"] for s in servers]
