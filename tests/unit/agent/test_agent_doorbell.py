"""The doorbell: a byte on wake.sock starts work at once; the agent survives the socket
being absent, and reconnects when the host drops it."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sandbox_agent.doorbell import serve_doorbell
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import HostSide

NEVER = 3600.0  # a safety poll that will not fire within any test


class Doorbell:
    """The host's end of wake.sock."""

    def __init__(self) -> None:
        self.streams: list[trio.SocketStream] = []
        self.connections = 0
        self._changed = trio.Event()

    async def serve(self, path: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(path))
        sock.listen(8)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._accept,
                                   [trio.SocketListener(sock)])
                task_status.started()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _accept(self, stream: trio.SocketStream) -> None:
        self.streams.append(stream)
        self.connections += 1
        self._changed.set()
        self._changed = trio.Event()
        await trio.sleep_forever()

    async def wait_for_connections(self, count: int) -> None:
        with trio.fail_after(10):
            while self.connections < count:
                await self._changed.wait()

    async def ring(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(b"\x01")

    async def hang_up(self) -> None:
        for stream in self.streams:
            await stream.aclose()
        self.streams.clear()


async def quiesce(agent_passes: Callable[[], int]) -> int:
    """Wait until the agent has stopped making passes (start-up and on-connect wakes)."""
    with trio.fail_after(10):
        while True:
            before = agent_passes()
            await trio.sleep(0.3)
            if agent_passes() == before:
                return before


async def test_a_doorbell_byte_triggers_processing_before_the_safety_poll(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any],
        nursery: trio.Nursery) -> None:
    host.with_config(safety_poll_interval_s=NEVER)
    bell = Doorbell()
    await nursery.start(bell.serve, host.config.wake_socket)
    agent = await start_agent()
    await bell.wait_for_connections(1)
    passes = await quiesce(lambda: agent.passes)

    message = host.enqueue("ding")
    await trio.sleep(0.3)
    # Without a ring nothing looks (the safety poll is an hour away)...
    assert agent.passes == passes and host.ack_of(message) is None
    # ...and with one, the answer comes at once.
    await bell.ring()
    with trio.fail_after(5):
        reply = await host.wait_for_reply(message)
    assert reply.content == "echo: ding"


async def test_the_agent_reconnects_after_the_host_hangs_up(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any],
        nursery: trio.Nursery) -> None:
    host.with_config(safety_poll_interval_s=NEVER)
    bell = Doorbell()
    await nursery.start(bell.serve, host.config.wake_socket)
    agent = await start_agent()
    await bell.wait_for_connections(1)
    await bell.hang_up()
    await bell.wait_for_connections(2)
    await quiesce(lambda: agent.passes)

    message = host.enqueue("still there?")
    await bell.ring()
    assert (await host.wait_for_reply(message, within_s=5)).content == "echo: still there?"


async def test_a_doorbell_that_appears_late_is_found(short_dir: Path,
                                                    nursery: trio.Nursery) -> None:
    path = short_dir / "wake.sock"
    send, rings = trio.open_memory_channel[None](100)
    nursery.start_soon(lambda: serve_doorbell(path, lambda: send.send_nowait(None),
                                              min_backoff_s=0.01, max_backoff_s=0.05))
    await trio.sleep(0.2)  # several failed connects: the socket is not there
    with pytest.raises(trio.WouldBlock):
        rings.receive_nowait()
    bell = Doorbell()
    await nursery.start(bell.serve, path)
    await bell.wait_for_connections(1)
    with trio.fail_after(5):
        await rings.receive()  # connecting rings once, to catch up on missed wakes
    await bell.ring()
    with trio.fail_after(5):
        await rings.receive()
