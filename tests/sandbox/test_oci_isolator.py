"""The OCI isolator on real runtimes: the sandbox sees only its own binds as its own
unprivileged uid, and whatever ends a launch, nothing of it is left on the host."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ironclaw.host.isolation import SandboxExited
from ironclaw.host.isolation.cgroups import leftover_cgroups
from ironclaw.host.isolation.oci import (
    CONTAINER_PREFIX,
    OciIsolator,
    cgroup_parent,
    container_id,
)
from ironclaw.host.isolation.reconcile import (
    leftover_runtime_state,
    reconcile_runtime_state,
)
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.spec import UserMapping
from tests.support.sandbox import (
    OCI_KINDS,
    ScriptImage,
    build_busybox_rootfs,
    launch_spec,
    require_runtime,
)

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
from tests.support.sandbox import ScriptImage, launch_spec
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


RUNTIME_PROGRAMS = frozenset({b"runsc", b"runc", b"crun", b"unshare"})


def _runtime_run(state: Path) -> int | None:
    """The pid of a ``<runtime> ... run`` of this state directory under way (or of
    crun's ``unshare`` wrapper that carries its arguments), past the launch gate."""
    root = str(state / "runtime").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (args[0].rsplit(b"/", 1)[-1] in RUNTIME_PROGRAMS and b"run" in args
                    and any(root in arg for arg in args)):
                return int(entry.name)
    return None


def _proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _descendants(ancestor: int) -> dict[int, str]:
    """Every process below ``ancestor``, with its state letter."""
    family: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (status := _proc_status(int(entry.name))):
            family[int(entry.name)] = (int(status["PPid"]), status["State"][:1])
    below: dict[int, str] = {}
    frontier = {ancestor}
    while frontier:
        frontier = {pid for pid, (ppid, _) in family.items()
                    if ppid in frontier and pid not in below}
        below.update((pid, family[pid][1]) for pid in frontier)
    return below


@contextlib.contextmanager
def _orphans_reparented_to_us() -> Iterator[None]:
    """Make this process the child subreaper: whatever a killed child leaves running
    is re-parented here instead of to init, so it stays countable as a descendant,
    however it forks, re-executes or detaches."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in _descendants(os.getpid()):  # reap the re-parented dead
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


PR_SET_CHILD_SUBREAPER = 36


def _launch_reached(stage: str, state: Path, outbound: Path) -> bool:
    if stage == "resumed":
        return True
    if stage == "cgroup-made":
        return any(path.name.startswith(CONTAINER_PREFIX)
                   for path in leftover_cgroups(cgroup_parent(state)))
    return (outbound / "beat").exists()  # "agent-running"


def _new_descendants(before: set[int]) -> dict[int, str]:
    """Live descendants of this process that are neither in ``before`` nor below one
    of those (a leftover of an earlier test may fork on)."""
    family = _descendants(os.getpid())
    older = set(before)
    for pid in before:
        older.update(_descendants(pid))
    return {pid: letter for pid, letter in family.items()
            if pid not in older and letter != "Z"}


def _reconcile_after_a_plane_killed_mid_launch(
        kind: RuntimeKind, stage: str, rootfs: Path, tmp: Path) -> tuple[bool, dict[int, str]]:
    """Kill a plane whose ``run`` is stopped where it was first seen, resume the
    ``run``, reconcile once the launch reached ``stage``. Returns whether the launch
    was still in flight when the plane died (its agent not yet up), and what of it
    is alive after reconcile."""
    state = tmp / "state"
    repo = str(Path(__file__).resolve().parents[2])
    with _orphans_reparented_to_us():
        before = set(_descendants(os.getpid()))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(
                tests=repo, state=str(state), keys=str(tmp / "keys"), kind=kind.value,
                rootfs=str(rootfs))],
            stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            with child.stdout:
                outbound = Path(child.stdout.readline().strip())
            deadline = time.monotonic() + 60
            while (run := _runtime_run(state)) is None and time.monotonic() < deadline:
                time.sleep(0.001)
            assert run is not None, "the runtime never started"
            os.kill(run, signal.SIGSTOP)
            child.send_signal(signal.SIGKILL)  # mid-launch
            child.wait()
            assert run in _new_descendants(before), "the plane left no launch behind"
            in_flight = not (outbound / "beat").exists()
            os.kill(run, signal.SIGCONT)
            deadline = time.monotonic() + 60
            while (not _launch_reached(stage, state, outbound)
                   and time.monotonic() < deadline):
                time.sleep(0.001)
            assert _launch_reached(stage, state, outbound), f"launch never reached {stage}"
        finally:
            child.kill()
            child.wait()
            reconcile_runtime_state(state)
        return in_flight, _new_descendants(before)


@pytest.mark.parametrize("stage", ["resumed", "cgroup-made", "agent-running"])
@pytest.mark.parametrize("kind", OCI_KINDS, ids=lambda k: k.value)
def test_reconcile_outruns_a_launch_a_killed_control_plane_left_in_flight(
        kind: RuntimeKind, stage: str, rootfs: Path, sandbox_tmp: Path) -> None:
    """The control plane dies the moment its runtime's ``run`` has started: that ``run``
    carries on alone and creates the container while reconcile hunts it. Once reconcile
    returns, nothing of the killed plane's launch may be alive (a live one could still
    start the container, a second writer beside the next plane's agent).

    Nothing here rests on timing. The ``run`` is stopped (SIGSTOP) where it is first
    seen; it is resumed, and reconcile starts when the launch has reached ``stage``: at
    once, once the container's cgroup exists, or once the agent runs (it then names
    nothing of ours), each an event, not a sleep. The test process, as child
    subreaper, inherits every process the plane left, so "nothing left alive" is a
    count, not a wait. Under load the ``run`` may be seen only after it forked the
    container (its agent is then up before the plane dies): such an attempt still
    checks that nothing survives, and is tried again until one is in flight."""
    require_runtime(kind, sandbox_tmp / "state")
    for attempt in range(IN_FLIGHT_ATTEMPTS):
        in_flight, survivors = _reconcile_after_a_plane_killed_mid_launch(
            kind, stage, rootfs, sandbox_tmp / f"attempt{attempt}")
        assert survivors == {}
        assert leftover_runtime_state(sandbox_tmp / f"attempt{attempt}" / "state") == []
        if in_flight:
            return
    pytest.fail(f"no attempt of {IN_FLIGHT_ATTEMPTS} caught the launch in flight")


IN_FLIGHT_ATTEMPTS = 5
