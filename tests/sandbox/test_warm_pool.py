"""The warm pool under real runsc: a claimed sandbox answers as the session's own, a
revived session claims a fresh one (never a used one), and a control plane killed with
a claimed and a waiting warm sandbox leaves nothing a restart does not clear."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.reconcile import leftover_runtime_state, reconcile_runtime_state
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from tests.support.sandbox import require_runtime

from .pool_plane_child import POOL, config, until_warm

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here"),
              pytest.mark.runsc]

CONV = DEMO_CONVERSATION


def _slot_dirs(state: Path, known: set[str]) -> list[str]:
    """Session-shaped directories that belong to no session: warm slots."""
    return sorted(d.name for d in (state / "sessions").iterdir()
                  if d.name not in known and not d.name.startswith("."))


@pytest.fixture
async def pooled(sandbox_tmp: Path, sandbox_image: SandboxImage
                 ) -> AsyncIterator[ControlPlaneHandles]:
    state = sandbox_tmp / "state"
    require_runtime(RuntimeKind.RUNSC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config(state, sandbox_tmp / "keys"),
                                                   credentials=Credentials()).run)
        yield handles
        sessions = {s.id for s in await handles.registry.list_sessions()}
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []
    assert not any((state / "pool").iterdir()), "a warm slot's marker outlived the plane"
    assert _slot_dirs(state, sessions) == []


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(CONV)
    await plane.local.post(CONV, "operator", text)
    with trio.fail_after(90):
        return (await plane.local.wait_for_reply(CONV, after_index=mark)).text


async def test_a_claimed_sandbox_serves_one_session_and_never_returns(
        pooled: ControlPlaneHandles) -> None:
    pool = pooled.pool
    assert pool is not None
    with trio.fail_after(120):
        await until_warm(pooled)
    # Waiting, a warm sandbox has nothing of any session: no key, no queue, no config.
    (waiting,) = pool._slots
    assert waiting.spec.key_file.stat().st_size == 0
    assert list(waiting.spec.queues.inbound_dir.iterdir()) == []
    assert b"unclaimed" in (waiting.spec.run_dir / "agent.json").read_bytes()
    assert await ask(pooled, "hello") == "echo: hello"
    assert (pool.claims, pool.misses) == (1, 0)
    (session,) = await pooled.registry.list_sessions()
    first = pooled.sessions.actor(session.id)
    assert first is not None
    # The session retires; the next message revives it on a fresh warm sandbox, which
    # carries on its history: the reply comes once, and the first is not repeated.
    with trio.fail_after(120):
        await until_warm(pooled)
    await pooled.sessions.mailbox.send(StopSession(session.id, "test", restart=False))
    await pooled.sessions.wait_retired(session.id)
    assert await ask(pooled, "again") == "echo: again"
    assert (pool.claims, pool.misses) == (2, 0)
    replies = [e.text for e in pooled.local.transcript(CONV) if e.role == "agent"]
    assert replies == ["echo: hello", "echo: again"]


def test_a_killed_plane_with_warm_sandboxes_leaves_nothing_after_restart(
        sandbox_tmp: Path, sandbox_image: SandboxImage) -> None:
    state, keys = sandbox_tmp / "state", sandbox_tmp / "keys"
    require_runtime(RuntimeKind.RUNSC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("pool_plane_child.py")), str(state),
         str(keys)], stdout=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    markers = list((state / "pool").iterdir())
    assert len(markers) == 2, "expected a claimed and a waiting warm slot to be left"
    assert leftover_runtime_state(state), "nothing was left: the test proves nothing"
    reconcile_runtime_state(state)
    assert leftover_runtime_state(state) == []

    async def restart() -> list[str]:
        off = attrs.evolve(POOL, max_total=0, max_per_group=0, prewarm_groups=())
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(config(state, keys, off),
                                                     credentials=Credentials()).run)
            known = {s.id for s in await plane.registry.list_sessions()}
            nursery.cancel_scope.cancel()
        return _slot_dirs(state, known)

    assert trio.run(restart) == []
    assert list((state / "pool").iterdir()) == []
    assert not any(len(p.name) == len(markers[0].name) for p in keys.iterdir())
