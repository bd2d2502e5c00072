"""Granted host mounts in real sandboxes (runsc, runc, crun): the granted directory is
there, read-only unless writing was granted, and nothing beside it; a source swapped
for a symlink after approval fails the launch instead of being followed; and every
stage is gone once the sandbox is. Then the whole plane (runsc, runc): a mount an
owner approves reaches the agent's read_file tool, and is gone once revoked."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_GROUP, DEMO_TOOLS
from ironclaw.host.gateway import GatewayConfig, MountRoot, Principal
from ironclaw.host.isolation import HostMount, MountRefused, SandboxExited
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.oci import OciIsolator
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.spec import UserMapping
from ironclaw.host.isolation.standin import build_busybox_rootfs as build_busybox
from ironclaw.host.modelproxy import Credentials
from tests.support.sandbox import APPLETS, OCI_KINDS, ScriptImage, launch_spec, require_runtime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

# Each line: what the agent tried, and its exit code (to stderr, which the host keeps).
SCRIPT = ("cat /mnt/notes/plan.txt >&2; echo read=$? >&2; "
          "echo x > /mnt/notes/planted; echo ro_write=$? >&2; "
          "echo x > /mnt/drop/planted; echo rw_write=$? >&2; "
          "echo x > /mnt/planted; echo base_write=$? >&2; "
          "ls /mnt >&2; cat /mnt/notes/../beside/secret.txt; echo beside=$? >&2")


@pytest.fixture(scope="module")
def rootfs(sandbox_tmp_session: Path) -> Path:
    return build_busybox(sandbox_tmp_session / "busybox-mounts", APPLETS)


def _plant(root: Path) -> tuple[HostMount, ...]:
    for name in ("notes", "drop", "beside"):
        (root / name).mkdir(mode=0o755, parents=True)
    root.chmod(0o755)
    (root / "notes" / "plan.txt").write_text("the plan\n")
    (root / "beside" / "secret.txt").write_text("not granted\n")
    for path in (root / "notes" / "plan.txt", root / "beside" / "secret.txt"):
        path.chmod(0o644)
    uid = UserMapping().agent_host_uid
    os.chown(root / "drop", uid, uid)
    return (HostMount(str(root), str(root / "notes"), "/mnt/notes", writable=False),
            HostMount(str(root), str(root / "drop"), "/mnt/drop", writable=True))


def _codes(said: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in said.splitlines()
                if "=" in line and line.split("=", 1)[0].isidentifier())


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_a_granted_mount_is_bound_as_granted_and_nothing_beside_it(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    state, root = sandbox_tmp / "state", (sandbox_tmp / "shared").resolve()
    runtime = require_runtime(kind, state)
    mounts = _plant(root)
    spec = attrs.evolve(launch_spec(state, sandbox_tmp / "keys"), mounts=mounts)
    isolator = OciIsolator(runtime, ScriptImage(rootfs, SCRIPT), state_dir=state)
    with trio.fail_after(120), pytest.raises(SandboxExited) as exited:
        await isolator.run(spec)
    said = exited.value.stderr_tail.decode("utf-8", "replace")
    codes = _codes(said)
    assert "the plan" in said and codes["read"] == "0", said
    assert codes["ro_write"] != "0" and not (root / "notes" / "planted").exists(), said
    assert codes["rw_write"] == "0" and (root / "drop" / "planted").exists(), said
    assert codes["base_write"] != "0", said
    assert codes["beside"] != "0" and "not granted" not in said, said

    # Revoked: the next launch has no mount at all.
    revoked = OciIsolator(runtime, ScriptImage(rootfs, "ls /mnt/notes; echo gone=$? >&2"),
                          state_dir=state)
    with trio.fail_after(120), pytest.raises(SandboxExited) as exited:
        await revoked.run(attrs.evolve(spec, mounts=()))
    assert _codes(exited.value.stderr_tail.decode())["gone"] != "0"
    await revoked.aclose()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []


@pytest.mark.runc
async def test_a_source_swapped_for_a_symlink_fails_the_launch(rootfs: Path,
                                                               sandbox_tmp: Path) -> None:
    state, root = sandbox_tmp / "state", (sandbox_tmp / "shared").resolve()
    runtime = require_runtime(RuntimeKind.RUNC, state)
    mounts = _plant(root)
    # After approval, someone who can write the root swaps the granted directory for
    # a link to the one beside it (and, separately, a parent for a link).
    (root / "notes").rename(root / "notes-old")
    (root / "notes").symlink_to(root / "beside")
    spec = attrs.evolve(launch_spec(state, sandbox_tmp / "keys"), mounts=mounts[:1])
    isolator = OciIsolator(runtime, ScriptImage(rootfs, "cat /mnt/notes/secret.txt"),
                           state_dir=state)
    with trio.fail_after(60), pytest.raises(MountRefused, match="symlink"):
        await isolator.run(spec)
    linked = sandbox_tmp / "linked"
    linked.symlink_to(root)
    via_link = HostMount(str(linked), str(linked / "drop"), "/mnt/drop", writable=True)
    with trio.fail_after(60), pytest.raises(MountRefused, match="symlink"):
        await isolator.run(attrs.evolve(spec, mounts=(via_link,)))
    await isolator.aclose()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []


@pytest.mark.runc
async def test_the_planes_own_places_are_never_staged(rootfs: Path, sandbox_tmp: Path) -> None:
    state = (sandbox_tmp / "state").resolve()
    runtime = require_runtime(RuntimeKind.RUNC, state)
    spec = launch_spec(state, sandbox_tmp / "keys")
    isolator = OciIsolator(runtime, ScriptImage(rootfs, "true"), state_dir=state)
    for source in (str(state), str(state / "workspaces"), str(state.parent), "/proc/self",
                   "/run"):
        mount = HostMount("/", source, "/mnt/x", writable=False)
        with trio.fail_after(60), pytest.raises(MountRefused):
            await isolator.run(attrs.evolve(spec, mounts=(mount,)))
    await isolator.aclose()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []


# -- the whole plane: approve, read through the agent's own tool, revoke -----------------

OWNER = Principal("operator", frozenset({"owner"}))
PLANE_KINDS = [pytest.param(RuntimeKind.RUNSC, marks=pytest.mark.runsc, id="runsc"),
               pytest.param(RuntimeKind.RUNC, marks=pytest.mark.runc, id="runc")]


async def _approve(plane: ControlPlaneHandles, kind: str, payload: object) -> None:
    stored = await plane.gateway.submit(kind, DEMO_GROUP, payload, requested_by=OWNER)
    decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE, OWNER)
    assert decided.status is ChangeStatus.APPLIED, decided


async def _ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(DEMO_CONVERSATION)
    await plane.local.post(DEMO_CONVERSATION, "operator", text)
    with trio.fail_after(120):
        return (await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)).text


@pytest.mark.parametrize("kind", PLANE_KINDS)
async def test_an_approved_mount_reaches_the_agents_tools_until_revoked(
        kind: RuntimeKind, sandbox_tmp: Path, sandbox_image: SandboxImage) -> None:
    state, root = sandbox_tmp / "state", (sandbox_tmp / "shared").resolve()
    require_runtime(kind, state)
    _plant(root)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime=kind.value, key_dir=sandbox_tmp / "keys",
        safety_poll_s=0.5, heartbeat_interval_s=0.5,
        gateway=GatewayConfig(mount_roots=(MountRoot(str(root), writable=True),)))
    read_plan = 'tool:read_file {"path": "/mnt/notes/plan.txt"}'
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        await _approve(plane, "enabled_tools", {"tools": [*DEMO_TOOLS, "read_file"]})
        assert "nothing is mounted" in await _ask(plane, read_plan)
        await _approve(plane, "mounts", [{"source": str(root / "notes")}])
        assert await _ask(plane, read_plan) == "tool result: the plan\n"
        beside = await _ask(plane, 'tool:read_file {"path": "/mnt/notes/../beside/secret.txt"}')
        assert "not granted" not in beside
        # Revoked: the apply respawns the group, whose next sandbox has no mount.
        await _approve(plane, "mounts", [])
        assert "nothing is mounted" in await _ask(plane, read_plan)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []
