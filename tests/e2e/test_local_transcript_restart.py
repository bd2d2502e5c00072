"""The local channel's conversation survives a control plane killed with SIGKILL: a
new plane on the same state serves it through the HTTP API, and numbering goes on."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from ironclaw.host.api import Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials
from tests.support.api import TEST_SETTINGS, plane_config, retire_sessions

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("local_chat_child.py")


def chat_then_die(tmp_path: Path, count: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), str(count)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)  # no shutdown, no flush: a crash
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


async def test_the_conversation_survives_a_kill_and_the_api_serves_it(
        tmp_path: Path) -> None:
    await trio.to_thread.run_sync(chat_then_die, tmp_path, 3)
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(plane_config(tmp_path), credentials=Credentials()).run)
        principals = Principals(handles.store, handles.api_token_key, audit=handles.audit)
        token = await bootstrap_owner(principals)
        assert token is not None
        binds = await nursery.start(functools.partial(
            serve_api, handles, TEST_SETTINGS, token_key=handles.api_token_key))
        async with httpx.AsyncClient(timeout=60) as client:
            path = f"/v1/channels/local/conversations/{DEMO_CONVERSATION}/messages"
            response = await client.get(binds[0] + path,
                                        headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            messages = response.json()["messages"]
            assert [(m["role"], m["text"]) for m in messages] == [
                (role, text) for i in range(3)
                for role, text in (("user", f"m{i}"), ("agent", f"echo: m{i}"))]
            assert [m["index"] for m in messages] == list(range(6))
            # The conversation goes on where it stopped.
            local = handles.local
            await local.post(DEMO_CONVERSATION, "alice", "after the crash")
            with trio.fail_after(60):
                answer = await local.wait_for_reply(DEMO_CONVERSATION, after_index=6)
            assert (answer.text, answer.index) == ("echo: after the crash", 7)
        await retire_sessions(handles)
        nursery.cancel_scope.cancel()
