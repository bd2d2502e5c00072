"""The frozen agent from the sealed image answers a real message: encrypted queues,
the model proxy over a unix socket, Trio, a clean exit on SIGTERM. It runs here as a
host process on host paths; the image tests run it inside runc and runsc."""

from __future__ import annotations

import os
import signal
import subprocess

import trio

from ironclaw.host.isolation.image import SandboxImage
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import HostSide


async def test_the_frozen_agent_answers_once_and_stops_cleanly(
        host: HostSide, fake_model: FakeModelServer, sandbox_image: SandboxImage) -> None:
    binary = sandbox_image.rootfs / sandbox_image.entrypoint[0].lstrip("/")
    config = host.write_config()
    message = host.enqueue("hello frozen")
    stderr_path = host.root / "frozen.stderr"
    stderr = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # The sandbox's environment: nothing of the host's leaks in.
        process = await trio.lowlevel.open_process(
            [str(binary), "--config", str(config)], env={"LANG": "C.UTF-8"}, cwd="/",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    finally:
        os.close(stderr)
    try:
        reply = await host.wait_for_reply(message, within_s=60)
        assert reply.content == "echo: hello frozen"
        assert host.ack_of(message) == "completed"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0, stderr_path.read_text()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await process.wait()
