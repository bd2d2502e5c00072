"""The whole control plane with agents in real OCI sandboxes running the sealed image.

Under runsc (and runc and crun where present): a conversation, a tool call, a scheduled task
and the approval flow for a capability change; and an agent killed mid-turn, again and
again, loses nothing and answers nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_TOOLS
from ironclaw.host.gateway import Principal
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.oci import container_id
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.modelproxy import Credentials
from ironclaw.runtime import BackoffPolicy
from tests.support.sandbox import require_runtime

from ..e2e.test_control_plane import until_agent_says

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

CONV = DEMO_CONVERSATION
RUNTIMES = [pytest.param(RuntimeKind.RUNSC, marks=pytest.mark.runsc, id="runsc"),
            pytest.param(RuntimeKind.RUNC, marks=pytest.mark.runc, id="runc"),
            # crun reads the seccomp profile's argument filters with its own code.
            pytest.param(RuntimeKind.CRUN, id="crun")]


@pytest.fixture
async def plane(request: pytest.FixtureRequest, sandbox_tmp: Path,
                sandbox_image: SandboxImage) -> AsyncIterator[ControlPlaneHandles]:
    kind: RuntimeKind = request.param
    state = sandbox_tmp / "state"
    require_runtime(kind, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime=kind.value, key_dir=sandbox_tmp / "keys",
        safety_poll_s=0.5, heartbeat_interval_s=0.5, sweep_interval_s=0.2,
        sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                      healthy_after=0.5))
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        yield handles
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(CONV)
    await plane.local.post(CONV, "operator", text)
    with trio.fail_after(90):
        return (await plane.local.wait_for_reply(CONV, after_index=mark)).text


@pytest.mark.parametrize("plane", RUNTIMES, indirect=True)
async def test_conversation_tool_schedule_and_approval(plane: ControlPlaneHandles) -> None:
    assert plane.runtime in ("runsc", "runc", "crun")
    assert await ask(plane, "hello") == "echo: hello"
    persona = await ask(plane, "tool:read_persona {}")
    assert persona.startswith("tool result:") and "Demo" in persona

    run_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    await ask(plane, "tool:schedule_task " + json.dumps({"prompt": "water the plants",
                                                         "run_at": run_at}))
    with trio.fail_after(90):
        await until_agent_says(plane, lambda text: text == "echo: [task] water the plants")

    directive = json.dumps({"kind": "enabled_tools",
                            "payload": {"tools": ["read_file", "list_dir"]},
                            "reason": "to read notes"})
    async with plane.events.subscribe("change.submitted", since=0) as submitted:
        await ask(plane, f"tool:request_capability_change {directive}")
        with trio.fail_after(60):
            await submitted.receive()
    (change,) = await plane.gateway.pending()
    assert (await plane.registry.get_agent_group("demo")).enabled_tools == DEMO_TOOLS
    owner = Principal("operator", frozenset({"owner"}))
    decided = await plane.gateway.decide(change.change.id, DecisionOutcome.APPROVE, owner)
    assert decided.status is ChangeStatus.APPLIED
    with trio.fail_after(120):
        await until_agent_says(plane, lambda text: change.change.id in text
                               and "applied" in text)
    kinds = [entry.kind for entry in await plane.audit.tail(300)]
    assert "sandbox.launched" in kinds and "runtime.selected" in kinds


@pytest.mark.slow
@pytest.mark.parametrize("plane", RUNTIMES[:1], indirect=True)
async def test_runsc_agent_killed_mid_turn_loses_nothing(plane: ControlPlaneHandles) -> None:
    local, rng = plane.local, random.Random(11)
    assert await ask(plane, "warm-up") == "echo: warm-up"
    (session,) = await plane.registry.list_sessions()
    runtime = OciRuntime.find(RuntimeKind.RUNSC, plane.config.state_dir)
    assert runtime is not None
    cid = container_id(session.id)
    kills = 6
    for i in range(kills):
        mark = local.cursor(CONV)
        await local.post(CONV, "operator", f"k{i}")
        await trio.sleep(rng.uniform(0, 0.05))  # somewhere inside the turn
        # SIGKILL to everything in the sandbox: the agent dies mid-turn. (If the
        # reply was already committed, the kill only costs a restart.)
        await trio.run_process(runtime.kill_argv(cid), capture_stdout=True,
                               capture_stderr=True, check=False)
        # The supervisor brings a new sandbox up, and it answers what was claimed.
        with trio.fail_after(90):
            while not any(e.text == f"echo: k{i}" for e in local.transcript(CONV)):
                mark = (await local.wait_for_reply(CONV, after_index=mark)).index
    expected = {f"echo: k{i}" for i in range(kills)} | {"echo: warm-up"}
    await trio.sleep(1.5)  # any duplicate would land in this window
    replies = [e.text for e in local.transcript(CONV) if e.role == "agent"]
    assert sorted(replies) == sorted(expected)  # each exactly once


def test_a_tampered_image_is_refused_at_launch(sandbox_tmp: Path,
                                               sandbox_image: SandboxImage) -> None:
    """The digest check fails closed: a changed byte in the pinned rootfs stops the
    daemon at start, with the path that changed."""
    require_runtime(RuntimeKind.RUNC, sandbox_tmp / "state")
    from tests.support.image import copy_image

    copy = copy_image(sandbox_image, sandbox_tmp / "image-copy")
    target = copy.rootfs / "etc" / "passwd"
    target.chmod(0o644)
    target.write_text(target.read_text() + "intruder:x:0:0::/:/bin/sh\n")
    state = sandbox_tmp / "state"
    state.mkdir(mode=0o711)
    pin_image(state, copy)
    done = subprocess.run(
        ["ironclaw-controlplane", "--runtime", "runc", "--no-api", "--no-chat",
         "--state-dir", str(state)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert done.returncode == 1
    assert "etc/passwd" in done.stderr and "ImageDigestMismatch" in done.stderr
