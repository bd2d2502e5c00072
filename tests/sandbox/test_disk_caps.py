"""The disk cap, from inside real sandboxes: the workspace and the outbound directory
share one cap (the agent group's volume), and an agent that fills it fails itself with
ENOSPC under runsc, runc and crun, whichever of the two it writes; the host's
filesystem pays at most the cap; another group's session still writes, and inbound
stays read-only; and when the control plane stops, no mount or loop device is left.
Then the whole plane under runc: the agent fills its workspace through its own
write_file tool, and host.db, the audit log and a bystander agent carry on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome, EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.gateway import Principal
from ironclaw.host.isolation import SandboxExited
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.oci import OciIsolator
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.standin import build_busybox_rootfs as build_busybox
from ironclaw.host.isolation.volumes import DiskCaps, leftover_volumes, release_volumes
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import AgentGroup, MessagingGroup, Persona, Wiring
from ironclaw.runtime import BackoffPolicy
from tests.support.sandbox import APPLETS, OCI_KINDS, ScriptImage, launch_spec, require_runtime

from ..e2e.test_control_plane import until_agent_says

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

CAP = 16 * 1024 * 1024
HALF_MIB = 8
# Half the cap into the workspace, then four times the cap into outbound, then more
# into the workspace (busybox's yes would spin on a full disk; dd stops). The exit
# codes go to stderr: the volume they would be written to is full.
FILL = (f"dd if=/dev/zero of=/workspace/half bs=1M count={HALF_MIB}; echo half=$? >&2; "
        "dd if=/dev/zero of=/queue/outbound/fill bs=1M count=64; echo outbound=$? >&2; "
        "dd if=/dev/zero of=/workspace/fill bs=1M count=64; echo workspace=$? >&2; "
        "echo x > /queue/inbound/planted; echo inbound=$? >&2")


@pytest.fixture(scope="module")
def rootfs(sandbox_tmp_session: Path) -> Path:
    return build_busybox(sandbox_tmp_session / "busybox-disk",
                         tuple(dict.fromkeys((*APPLETS, "dd", "rm"))))


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_an_agent_that_fills_its_disk_fails_itself_and_nobody_else(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    state = sandbox_tmp / "state"
    runtime = require_runtime(kind, state)
    caps = DiskCaps(group_bytes=CAP)
    try:
        filler = launch_spec(state, sandbox_tmp / "keys")
        isolator = OciIsolator(runtime, ScriptImage(rootfs, FILL), state_dir=state, disk=caps)
        with trio.fail_after(120), pytest.raises(SandboxExited) as filled:
            await isolator.run(filler)
        said = filled.value.stderr_tail.decode("utf-8", "replace")
        codes = dict(line.split("=", 1) for line in said.splitlines()
                     if line.split("=", 1)[0] in ("half", "outbound", "workspace", "inbound"))
        assert codes["half"] == "0", said
        assert codes["outbound"] != "0" and codes["workspace"] != "0", said
        assert codes["inbound"] != "0", said  # read-only to the agent, full or not
        # Outbound got what the workspace left of the one cap, no more.
        assert 0 < (filler.queues.outbound_dir / "fill").stat().st_size \
            < CAP - HALF_MIB * 1024 * 1024
        images = list((state / "volumes").glob("*/*.img"))
        assert len(images) == 1  # one volume: the group's
        assert images[0].stat().st_blocks * 512 <= CAP  # what the host's disk paid

        bystander = launch_spec(state, sandbox_tmp / "keys")
        other = state / "workspaces" / "other"
        other.mkdir()
        bystander = attrs.evolve(bystander, workspace=other)
        writes = OciIsolator(runtime, ScriptImage(
            rootfs, "dd if=/dev/zero of=/workspace/a bs=1M count=1 && "
                    "echo ok > /queue/outbound/ok"),
            state_dir=state, disk=caps)
        with trio.fail_after(120), pytest.raises(SandboxExited) as exited:
            await writes.run(bystander)
        assert exited.value.returncode == 0, exited.value.stderr_tail
        assert (bystander.queues.outbound_dir / "ok").read_text() == "ok\n"
        assert (other / "a").stat().st_size == 1048576

        await isolator.aclose()
        assert leftover_volumes(state) == []
        assert leftover_runtime_state(state) == []
    finally:
        release_volumes(state)


# -- the whole plane ---------------------------------------------------------------------

BYSTANDER = "bystander"


@pytest.fixture
async def plane(sandbox_tmp: Path, sandbox_image: SandboxImage
                ) -> AsyncIterator[ControlPlaneHandles]:
    state = sandbox_tmp / "state"
    require_runtime(RuntimeKind.RUNC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime="runc", key_dir=sandbox_tmp / "keys",
        safety_poll_s=0.5, heartbeat_interval_s=0.5, sweep_interval_s=0.2,
        sandbox_disk=DiskCaps(group_bytes=CAP),
        sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                      healthy_after=0.5))
    try:
        async with trio.open_nursery() as nursery:
            handles = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            yield handles
            nursery.cancel_scope.cancel()
        assert await trio.to_thread.run_sync(leftover_volumes, state) == []
        assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []
    finally:
        await trio.to_thread.run_sync(release_volumes, state)


async def _ask(plane: ControlPlaneHandles, conversation: str, text: str) -> str:
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, "operator", text)
    with trio.fail_after(90):
        return (await plane.local.wait_for_reply(conversation, after_index=mark)).text


async def _add_bystander(plane: ControlPlaneHandles) -> None:
    registry = plane.registry
    await registry.put_agent_group(AgentGroup(
        id=BYSTANDER, name="Bystander", folder=BYSTANDER, provider="mock", model="mock",
        persona=Persona(identity="A bystander.", soul="", instructions="")))
    group = await registry.ensure_messaging_group("local", BYSTANDER)
    await registry.put_messaging_group(MessagingGroup(
        id=group.id, channel=group.channel, platform_id=group.platform_id,
        instance=group.instance, unknown_sender_policy=UnknownSenderPolicy.PUBLIC,
        name="Bystander", created_at=group.created_at))
    await registry.put_wiring(Wiring(id="bystander-local", messaging_group_id=group.id,
                                     agent_group_id=BYSTANDER,
                                     engage_mode=EngageMode.PATTERN, pattern="."))


async def _grant_write_file(plane: ControlPlaneHandles) -> None:
    directive = json.dumps({"kind": "enabled_tools", "payload": {"tools": ["write_file"]},
                            "reason": "to keep notes"})
    async with plane.events.subscribe("change.submitted", since=0) as submitted:
        await _ask(plane, DEMO_CONVERSATION, f"tool:request_capability_change {directive}")
        with trio.fail_after(60):
            await submitted.receive()
    (change,) = await plane.gateway.pending()
    owner = Principal("operator", frozenset({"owner"}))
    decided = await plane.gateway.decide(change.change.id, DecisionOutcome.APPROVE, owner)
    assert decided.status is ChangeStatus.APPLIED
    with trio.fail_after(120):
        await until_agent_says(plane, lambda text: change.change.id in text
                               and "applied" in text)


@pytest.mark.runc
@pytest.mark.long  # 75 s; the caps themselves are proven per runtime above
async def test_a_plane_agent_filling_its_workspace_fails_only_itself(
        plane: ControlPlaneHandles) -> None:
    await _add_bystander(plane)
    assert await _ask(plane, BYSTANDER, "hello") == "echo: hello"
    await _grant_write_file(plane)
    chunk = "x" * 60_000
    results = []
    for n in range(2 * CAP // len(chunk)):
        call = json.dumps({"path": f"fill-{n}", "content": chunk})
        results.append(await _ask(plane, DEMO_CONVERSATION, f"tool:write_file {call}"))
        if "wrote" not in results[-1]:
            break
    assert "wrote" not in results[-1], "the workspace never filled: no cap"
    assert "No space left" in results[-1] or "space" in results[-1].lower(), results[-1]
    assert len(results) * len(chunk) < 2 * CAP
    # The agent failed a tool call, not its turn; everyone else carries on.
    assert await _ask(plane, DEMO_CONVERSATION, "still there?") == "echo: still there?"
    assert await _ask(plane, BYSTANDER, "and you?") == "echo: and you?"
    assert (await plane.registry.get_agent_group(BYSTANDER)).name == "Bystander"
    assert [entry.kind for entry in await plane.audit.tail(50)]


KILLED_PLANE = """
import sys, trio
from pathlib import Path
sys.path.insert(0, {repo!r})
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.isolation.volumes import DiskCaps
from ironclaw.host.modelproxy import Credentials

async def main():
    config = ControlPlaneConfig(state_dir=Path({state!r}), dev=True, runtime="runc",
                                key_dir=Path({keys!r}), sandbox_disk=DiskCaps({cap}))
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        await plane.local.post("demo", "operator", "before the kill")
        await plane.local.wait_for_reply("demo", after_index=0)
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@pytest.mark.runc
def test_a_killed_planes_volumes_are_adopted_at_start_and_released_at_stop(
        sandbox_tmp: Path, sandbox_image: SandboxImage) -> None:
    state, keys = sandbox_tmp / "state", sandbox_tmp / "keys"
    require_runtime(RuntimeKind.RUNC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    repo = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PLANE.format(repo=repo, state=str(state),
                                                   keys=str(keys), cap=CAP)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        with child.stdout:
            assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)  # no chance to unmount anything
        child.wait()
        left = leftover_volumes(state)
        assert any(entry.startswith("mount:") and entry.endswith("/outbound")
                   for entry in left), left

        async def restart() -> None:
            config = ControlPlaneConfig(state_dir=state, dev=True, runtime="runc",
                                        key_dir=keys, sandbox_disk=DiskCaps(CAP))
            async with trio.open_nursery() as nursery:
                plane = await nursery.start(
                    ControlPlane(config, credentials=Credentials()).run)
                mounts = [e for e in leftover_volumes(state) if e.startswith("mount:")]
                assert sorted(mounts) == sorted(e for e in left if e.startswith("mount:"))
                await plane.local.post(DEMO_CONVERSATION, "operator", "after")
                with trio.fail_after(90):
                    await until_agent_says(plane, lambda text: text == "echo: after")
                nursery.cancel_scope.cancel()

        trio.run(restart)
        assert leftover_volumes(state) == []
        assert leftover_runtime_state(state) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        release_volumes(state)
