"""Faults: the agent killed mid-turn again and again, and the control plane itself
killed with messages in flight. Every accepted message is answered exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials

from .plane_child import config

CHILD = Path(__file__).with_name("plane_child.py")


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(
            config(tmp_path / "state", tmp_path / "keys"), credentials=Credentials()).run)
        yield handles
        nursery.cancel_scope.cancel()


def agent_pids(under: Path | None = None) -> set[int]:
    """Live agent processes; with ``under``, only those whose config lives there (so
    other control planes on the machine, other tests, are not counted)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"sandbox_agent" in cmdline and b"--config" in cmdline and (
                    under is None or str(under).encode() in cmdline):
                pids.add(int(entry.name))
    return pids


async def running_agent(pid_file: Path, *, not_pid: int | None) -> int:
    """The pid of a live agent other than ``not_pid``, once the supervisor has one up."""
    def live_pid() -> int | None:
        try:
            pid = int(pid_file.read_text())
            return pid if Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except (OSError, ValueError):
            return None

    for _ in range(3000):
        pid = await trio.to_thread.run_sync(live_pid)
        if pid is not None and pid != not_pid:
            return pid
        await trio.sleep(0.01)
    raise AssertionError("no agent came up")


@pytest.mark.slow
async def test_agent_killed_mid_turn_twenty_times(plane: ControlPlaneHandles) -> None:
    local, rng = plane.local, random.Random(7)
    await local.post(DEMO_CONVERSATION, "operator", "warm-up")
    with trio.fail_after(60):
        await local.wait_for_reply(DEMO_CONVERSATION)
    (session,) = await plane.registry.list_sessions()
    pid_file = plane.config.state_dir / "sessions" / session.id / "run" / "agent.pid"
    kills, last = 0, None
    for i in range(20):
        pid = await running_agent(pid_file, not_pid=last)
        await local.post(DEMO_CONVERSATION, "operator", f"k{i}")
        await trio.sleep(rng.uniform(0, 0.02))  # somewhere inside the turn
        os.killpg(pid, signal.SIGKILL)
        kills, last = kills + 1, pid
    assert kills == 20
    expected = {f"echo: k{i}" for i in range(20)} | {"echo: warm-up"}
    with trio.fail_after(180):
        seen = -1
        while not expected <= {e.text for e in local.transcript(DEMO_CONVERSATION)}:
            seen = (await local.wait_for_reply(DEMO_CONVERSATION, after_index=seen)).index
    await trio.sleep(1.5)  # any duplicate would land in this window
    replies = [e.text for e in local.transcript(DEMO_CONVERSATION) if e.role == "agent"]
    assert sorted(replies) == sorted(expected)  # each exactly once


@pytest.mark.slow
def test_control_plane_killed_with_messages_in_flight(tmp_path: Path) -> None:
    state, keys = tmp_path / "state", tmp_path / "keys"
    before = agent_pids(state)
    first = subprocess.Popen([sys.executable, str(CHILD), str(state), str(keys), "post", "10"],
                             stdout=subprocess.PIPE, text=True)
    accepted = []
    assert first.stdout is not None
    for line in first.stdout:
        accepted.append(int(line.split()[1]))
        if len(accepted) == 6:
            break
    first.send_signal(signal.SIGKILL)  # no cleanup at all: sandboxes are orphaned
    first.wait()
    first.stdout.close()
    orphans = agent_pids(state) - before
    second = subprocess.run(
        [sys.executable, str(CHILD), str(state), str(keys), "verify", str(len(accepted))],
        capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout.strip().splitlines()[-1])
    want = [f"echo: m{i}" for i in accepted]
    # Every acknowledged message answered, none twice, every answer delivered.
    for text in want:
        assert report["replies"].count(text) == 1, report
        assert report["delivered"].count(text) == 1, report
    assert len(report["replies"]) == len(set(report["replies"]))
    # The orphaned agent of the killed plane was reaped before a second one started.
    assert not (orphans & agent_pids(state))
    assert not (agent_pids(state) - before)
