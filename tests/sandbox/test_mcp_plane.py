"""MCP end to end under runsc: the agent in its gVisor sandbox, each MCP server in its
own. Local channel -> queues -> the sealed agent, whose mock model's tool directive
calls ``time__get_current_time`` or ``git__git_log`` -> mcp.sock -> the broker -> the
real server from PyPI in its server sandbox (image built and pinned by the plane at
start) -> back to the chat. A revocation refuses the next call, and when the plane
stops nothing of any sandbox is left."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.mcp import McpCatalogEntry, McpConfig, McpLimits, McpServerEntry
from ironclaw.host.modelproxy import Credentials
from ironclaw.runtime import BackoffPolicy
from tests.support.sandbox import require_runtime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

OWNER = Principal("operator", frozenset({"owner"}))
# The same recipe as test_mcp_server_sandbox.py: one image in the test cache serves both.
IMAGE = {"python": ["mcp-server-fetch", "mcp-server-git", "mcp-server-time"],
         "programs": ["git"]}
SERVERS = (
    McpCatalogEntry(McpServerEntry("time", "mcp-server-time", ("--local-timezone", "UTC"),
                                   image=IMAGE)),
    McpCatalogEntry(McpServerEntry("git", "mcp-server-git", session_workspace=True,
                                   image=IMAGE)),
)
NOW_IN_TOKYO = "tool:time__get_current_time " + json.dumps({"timezone": "Asia/Tokyo"})
GIT_LOG = "tool:git__git_log " + json.dumps({"repo_path": "/workspace/repo"})


@pytest.fixture
async def plane(sandbox_tmp: Path, sandbox_image: SandboxImage,
                sandbox_image_cache: Path) -> AsyncIterator[ControlPlaneHandles]:
    state = sandbox_tmp / "state"
    require_runtime(RuntimeKind.RUNSC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime="runsc", key_dir=sandbox_tmp / "keys",
        image_cache_dir=sandbox_image_cache,
        # A gVisor start on ptrace takes seconds, and far more on a loaded machine.
        mcp=McpConfig(servers=SERVERS, limits=McpLimits(start_timeout_s=120.0,
                                                        call_timeout_s=150.0)),
        safety_poll_s=0.5, heartbeat_interval_s=0.5, sweep_interval_s=0.2,
        sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                      healthy_after=0.5))
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        demo = await handles.registry.get_agent_group(DEMO_GROUP)
        await handles.registry.put_agent_group(attrs.evolve(demo, enabled_tools=()))
        yield handles
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(DEMO_CONVERSATION)
    await plane.local.post(DEMO_CONVERSATION, "operator", text)
    with trio.fail_after(180):
        return (await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)).text


async def grant(plane: ControlPlaneHandles, servers: dict[str, object]) -> None:
    async with plane.events.subscribe("session.started") as started:
        stored = await plane.gateway.submit("mcp_access", DEMO_GROUP, {"servers": servers},
                                            requested_by=OWNER, reason="e2e")
        decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE,
                                             OWNER)
        assert decided.status is ChangeStatus.APPLIED
        with trio.fail_after(60):
            await started.receive()


def _commit(repo: Path) -> None:
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=Host", "-c", "user.email=h@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "made on the host"],
                   check=True)


@pytest.mark.runsc
async def test_the_sandboxed_agent_reaches_sandboxed_servers_until_revoked(
        plane: ControlPlaneHandles) -> None:
    assert plane.runtime == "runsc"
    assert "unknown tool 'time__get_current_time'" in await ask(plane, NOW_IN_TOKYO)
    await grant(plane, {"time": "*", "git": ["git_log"]})

    reply = await ask(plane, NOW_IN_TOKYO)
    assert reply.startswith("tool result: {"), reply
    answer = json.loads(reply.removeprefix("tool result: "))
    assert (answer["timezone"], answer["datetime"][-6:]) == ("Asia/Tokyo", "+09:00")

    demo = await plane.registry.get_agent_group(DEMO_GROUP)
    workspace = plane.config.state_dir / "workspaces" / demo.folder
    await trio.to_thread.run_sync(_commit, workspace / "repo")
    log = await ask(plane, GIT_LOG)
    assert log.startswith("tool result: ") and "made on the host" in log, log

    await grant(plane, {"git": ["git_log"]})
    assert "unknown tool 'time__get_current_time'" in await ask(plane, NOW_IN_TOKYO)
    started = [e.fields for e in await plane.audit.tail(500)
               if e.kind == "mcp.server" and e.fields["state"] == "started"]
    assert {s["server"] for s in started} == {"time", "git"}
