"""Exactly once through control-plane crashes, on every runtime.

A real peer posts signed events to several webhook chats wired to the demo agent,
retrying each until it gets 200. Meanwhile the control plane (a child process) is
killed with SIGKILL and restarted, again and again, the first time while its first
sandboxes are starting. Under ``runsc`` a killed plane's sandboxes outlive it, and a
plane killed mid-launch leaves its ``runsc run`` going on its own: the next plane must
never let a second agent write a session's outbound queue beside a leftover one.

Asserted, from what an independent receiver saw: every accepted event is answered
exactly once (one reply, one idempotency key), no reply is stray, and nothing of the
sandboxes is left behind.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.reconcile import leftover_runtime_state, reconcile_runtime_state
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import WebhookReceiver, open_webhook_receiver, signed_headers

from .test_faults import agent_pids

CHILD = Path(__file__).with_name("webhook_plane_child.py")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "in-" + secrets.token_hex(16)
OUT_SECRET = "out-" + secrets.token_hex(16)

CHATS = 3
EVENTS_PER_CHAT = 4
KILLS = 4

# The suite's chaos short form (tests/chaos) kills planes under runc and runsc too; this
# reproduction runs there under process only, and under all three with `make chaos`.
RUNTIMES = [pytest.param("process", id="process"),
            pytest.param("runsc", marks=[pytest.mark.runsc, pytest.mark.long], id="runsc"),
            pytest.param("runc", marks=[pytest.mark.runc, pytest.mark.long], id="runc")]


class Plane:
    """The control plane child: start, wait for ``ready``, kill, stop."""

    def __init__(self, config_file: Path) -> None:
        self._config_file = config_file
        self.process: trio.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
        self.process = await trio.lowlevel.open_process(
            [sys.executable, str(CHILD), str(self._config_file)], env=env,
            stdout=subprocess.PIPE, cwd=str(ROOT))
        assert self.process.stdout is not None
        seen = b""
        with trio.fail_after(120):
            while b"ready" not in seen:
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"the plane exited: {await self.process.wait()}")
                seen += chunk
        self.starts += 1

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # no cleanup at all
        await self.process.wait()
        assert self.process.stdout is not None
        await self.process.stdout.aclose()

    async def abandon(self, state: Path, runtime: str) -> None:
        """After a failure: kill the plane and whatever sandboxes it left, so a failed
        run leaves nothing running on the machine."""
        if self.process is not None and self.process.returncode is None:
            await self.kill()
        if runtime == "process":
            for pid in agent_pids(state):
                os.kill(pid, signal.SIGKILL)
        else:
            await trio.to_thread.run_sync(reconcile_runtime_state, state)

    async def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            assert await self.process.wait() == 0
        assert self.process.stdout is not None
        await self.process.stdout.aclose()


async def post_until_accepted(client: httpx.AsyncClient, url: str, event: dict[str, str]
                              ) -> None:
    """A careful peer: the same event, with the same id, until a 200."""
    body = json.dumps(event).encode()
    while True:
        try:
            answer = await client.post(url, content=body,
                                       headers=signed_headers(SECRET.encode(), body))
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await trio.sleep(0.05)


async def peer(client: httpx.AsyncClient, url: str, chat: str,
               accepted: list[str]) -> None:
    for k in range(EVENTS_PER_CHAT):
        text = f"{chat}-m{k}"
        await post_until_accepted(client, url, {"id": f"e-{text}", "chat": chat,
                                                "sender": "alice", "text": text})
        accepted.append(text)
        await trio.sleep(0.15)


def replies(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(post.body["text"] for post in receiver.received)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_every_accepted_event_is_answered_once_through_plane_kills(
        runtime: str, sandbox_tmp: Path, request: pytest.FixtureRequest) -> None:
    state = sandbox_tmp / "state"
    if runtime != "process":
        if os.geteuid() != 0:
            pytest.skip("OCI runtimes need root here")
        if OciRuntime.find(RuntimeKind(runtime), state) is None:
            pytest.skip(f"{runtime} is not installed on this host")
        state.mkdir(mode=0o711)
        image: SandboxImage = request.getfixturevalue("sandbox_image")
        pin_image(state, image)
    rng = random.Random(13)
    port = free_port()
    chats = [f"chat-{i}" for i in range(CHATS)]
    accepted: list[str] = []
    async with open_webhook_receiver(OUT_SECRET.encode()) as receiver, \
            httpx.AsyncClient(timeout=10) as client:
        config_file = sandbox_tmp / "plane.json"
        config_file.write_text(json.dumps({
            "state": str(state), "keys": str(sandbox_tmp / "keys"), "runtime": runtime,
            "listen": f"127.0.0.1:{port}", "url": receiver.url, "secret": SECRET,
            "outbound_secret": OUT_SECRET, "chats": chats}))
        plane = Plane(config_file)
        try:
            await plane.start()
            url = f"http://127.0.0.1:{port}/hooks/default"
            async with trio.open_nursery() as peers:
                for chat in chats:
                    peers.start_soon(peer, client, url, chat, accepted)
                # The first kill lands while the chats' first sandboxes are starting.
                await trio.sleep(0.3)
                for _ in range(KILLS):
                    await plane.kill()
                    await plane.start()
                    await trio.sleep(rng.uniform(0.2, 1.0))
            assert sorted(accepted) == sorted(f"{c}-m{k}" for c in chats
                                              for k in range(EVENTS_PER_CHAT))
            want = Counter(f"echo: {text}" for text in accepted)
            with trio.move_on_after(60):
                await receiver.wait_for(lambda post: post.body["text"] in want, len(want))
            await trio.sleep(1.5)  # a second answer would land in this window
            got = replies(receiver)
            missing = sorted(set(want) - set(got))
            doubled = sorted(text for text, n in got.items() if n > 1)
            stray = sorted(set(got) - set(want))
            assert (missing, doubled, stray) == ([], [], []), (
                f"{runtime}: {len(missing)} unanswered, {len(doubled)} answered twice "
                f"(different idempotency keys), {len(stray)} stray, after "
                f"{plane.starts - 1} kills: {missing} {doubled} {stray}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await plane.abandon(state, runtime)
            raise
        await plane.stop()
    if runtime == "process":
        assert agent_pids(state) == set()
    else:
        assert await trio.to_thread.run_sync(leftover_runtime_state, state) == []
