"""The OCI isolator on real runtimes: the sandbox sees only its own binds as its own
unprivileged uid, and whatever ends a launch, nothing of it is left on the host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from ironclaw.host.isolation import SandboxExited
from ironclaw.host.isolation.oci import OciIsolator, container_id
from ironclaw.host.isolation.reconcile import (
    leftover_runtime_state,
    reconcile_runtime_state,
)
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.spec import UserMapping

from .toolkit import OCI_KINDS, ScriptImage, build_busybox_rootfs, launch_spec, require_runtime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")


@pytest.fixture(scope="module")
def rootfs(sandbox_tmp_session: Path) -> Path:
    return build_busybox_rootfs(sandbox_tmp_session / "busybox")


async def _wait_for(path: Path) -> None:
    with trio.fail_after(30):
        while not await trio.Path(path).exists():  # noqa: ASYNC110 (a file, not an event)
            await trio.sleep(0.02)


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_sandbox_writes_only_outbound_as_its_mapped_uid(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    state = sandbox_tmp / "state"
    runtime = require_runtime(kind, state)
    spec = launch_spec(state, sandbox_tmp / "keys")
    script = ("id -u > /queue/outbound/uid; "
              "(touch /queue/inbound/x 2>/dev/null && echo yes || echo no) > /queue/outbound/in; "
              "(touch /bin/x 2>/dev/null && echo yes || echo no) > /queue/outbound/root; "
              "cat /run/ironclaw/session.key > /queue/outbound/key; "
              "ls /run/ironclaw/sock > /dev/null; echo done > /queue/outbound/done")
    isolator = OciIsolator(runtime, ScriptImage(rootfs, script), state_dir=state)
    with trio.fail_after(60), pytest.raises(SandboxExited) as exited:
        await isolator.run(spec)
    assert exited.value.returncode == 0, exited.value.stderr_tail
    out = spec.queues.outbound_dir
    assert (out / "uid").read_text().strip() == "65532"
    assert (out / "in").read_text().strip() == "no"
    assert (out / "root").read_text().strip() == "no"
    assert (out / "key").read_text().startswith("inbound=")
    assert (out / "done").stat().st_uid == UserMapping().agent_host_uid
    await isolator.aclose()
    assert leftover_runtime_state(state) == []


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
async def test_a_cancelled_launch_leaves_nothing_behind(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    state = sandbox_tmp / "state"
    runtime = require_runtime(kind, state)
    spec = launch_spec(state, sandbox_tmp / "keys")
    isolator = OciIsolator(runtime, ScriptImage(
        rootfs, "touch /queue/outbound/up; sleep 600"), state_dir=state, grace_period=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(isolator.run, spec)
        await _wait_for(spec.queues.outbound_dir / "up")
        assert runtime.list_containers() == [container_id(spec.session_id)]
        nursery.cancel_scope.cancel()
    await isolator.aclose()
    assert leftover_runtime_state(state) == []


CHILD = """
import sys, trio
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.sandbox.toolkit import ScriptImage, launch_spec
from ironclaw.host.isolation.oci import OciIsolator
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
state = Path({state!r})
spec = launch_spec(state, Path({keys!r}))
print(spec.queues.outbound_dir, flush=True)
runtime = OciRuntime.find(RuntimeKind({kind!r}), state)
iso = OciIsolator(runtime, ScriptImage(Path({rootfs!r}),
                  "while true; do date +%s%N > /queue/outbound/beat; sleep 0.05; done"),
                  state_dir=state)
trio.run(iso.run, spec)
"""


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
def test_reconcile_removes_what_a_killed_control_plane_left(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    state = sandbox_tmp / "state"
    require_runtime(kind, state)
    repo = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=repo, state=str(state),
                                            keys=str(sandbox_tmp / "keys"), kind=kind.value,
                                            rootfs=str(rootfs))],
        stdout=subprocess.PIPE, text=True, start_new_session=False)
    assert child.stdout is not None
    with child.stdout:
        outbound = Path(child.stdout.readline().strip())
    beat = outbound / "beat"
    deadline = time.monotonic() + 60
    while not beat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat.exists(), "the sandbox never started"
    child.send_signal(signal.SIGKILL)  # the control plane dies without cleaning up
    child.wait()
    assert leftover_runtime_state(state), "nothing was left: the test proves nothing"
    reconciled = reconcile_runtime_state(state)
    assert reconciled.containers or reconciled.bundles
    assert leftover_runtime_state(state) == []
    # And nothing is still writing the session's outbound directory.
    last = beat.read_text()
    time.sleep(0.5)
    assert beat.read_text() == last


def _runtime_run_started(state: Path) -> bool:
    """A ``<runtime> ... run`` of this state directory is under way."""
    root = str(state / "runtime").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"run" in args and any(root in arg for arg in args):
                return True
    return False


@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
def test_reconcile_outruns_a_launch_a_killed_control_plane_left_in_flight(
        kind: RuntimeKind, rootfs: Path, sandbox_tmp: Path) -> None:
    """The control plane dies the moment its runtime's ``run`` has started: that ``run``
    carries on alone and creates the container a moment later, when the runtime may
    not list it yet. Reconcile must kill it all the same, and no sandbox may ever start
    writing the session's outbound directory afterwards (a second writer beside the
    next plane's agent)."""
    state = sandbox_tmp / "state"
    require_runtime(kind, state)
    repo = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=repo, state=str(state),
                                            keys=str(sandbox_tmp / "keys"), kind=kind.value,
                                            rootfs=str(rootfs))],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child.stdout:
        outbound = Path(child.stdout.readline().strip())
    deadline = time.monotonic() + 60
    while not _runtime_run_started(state) and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)  # mid-launch
    child.wait()
    beat = outbound / "beat"
    assert not beat.exists(), "the sandbox was already up: the test proves nothing"
    reconcile_runtime_state(state)
    time.sleep(3)  # an orphaned run would have started the sandbox by now
    assert not beat.exists()
    assert leftover_runtime_state(state) == []
