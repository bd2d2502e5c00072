"""``python -m sandbox_agent`` as a real process: crash mid-turn, restart, no duplicate;
clean shutdown on SIGTERM; one-line errors for bad start-up input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ironclaw.contract.cipher import RawKey, SessionKeys
from ironclaw.contract.queue import OutboundWriter
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import HostSide

ROOT = Path(__file__).resolve().parents[3]


class AgentProcess:
    def __init__(self, process: trio.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path

    def stderr(self) -> str:
        return self.stderr_path.read_text()


async def spawn(host: HostSide, config: Path, name: str) -> AgentProcess:
    stderr_path = host.root / f"{name}.stderr"
    # A file, not a pipe: nobody has to drain it while the agent runs.
    stderr = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "sandbox_agent", "--config", str(config)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    finally:
        os.close(stderr)
    return AgentProcess(process, stderr_path)


@asynccontextmanager
async def agent_process(host: HostSide, config: Path, name: str
                        ) -> AsyncIterator[AgentProcess]:
    """A running agent that is killed and reaped on the way out, pass or fail."""
    agent = await spawn(host, config, name)
    try:
        yield agent
    finally:
        if agent.process.returncode is None:
            agent.process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await agent.process.wait()


async def run_to_exit(host: HostSide, config: Path) -> tuple[int, str]:
    async with agent_process(host, config, "oneshot") as agent:
        with trio.fail_after(60):
            code = await agent.process.wait()
    return code, agent.stderr()


async def test_kill_9_mid_turn_then_restart_answers_exactly_once(
        host: HostSide, fake_model: FakeModelServer) -> None:
    config = host.write_config()
    fake_model.hold()  # the model "thinks" until released: the turn is in flight
    message = host.enqueue("a slow question")
    async with agent_process(host, config, "first") as first:
        with trio.fail_after(60):
            await fake_model.wait_for_requests(1)
        # A turn still running after claim_after_s is claimed.
        await host.wait_until(lambda: host.ack_of(message) == "processing")
        first.process.kill()
        with trio.fail_after(30):
            assert await first.process.wait() == -signal.SIGKILL
    fake_model.release()  # the dead agent's request goes nowhere
    assert host.replies_to(message) == []

    async with agent_process(host, config, "second") as second:
        reply = await host.wait_for_reply(message, within_s=60)
        assert reply.content == "echo: a slow question"
        # Rows are answered in order: once the next one is answered, the first was
        # settled for good. It must still have exactly one reply.
        await host.wait_for_reply(host.enqueue("and another"), within_s=30)
        assert len(host.replies_to(message)) == 1
        assert host.ack_of(message) == "completed"
        second.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await second.process.wait() == 0, second.stderr()


async def test_sigterm_mid_turn_abandons_it_cleanly_and_the_restart_answers(
        host: HostSide, fake_model: FakeModelServer) -> None:
    config = host.write_config()
    fake_model.hold()
    message = host.enqueue("take your time")
    async with agent_process(host, config, "first") as agent:
        with trio.fail_after(60):
            await fake_model.wait_for_requests(1)
        await host.wait_until(lambda: host.ack_of(message) == "processing")
        agent.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await agent.process.wait() == 0, agent.stderr()
    fake_model.release()
    # Nothing of the abandoned turn was committed: no reply, no completed ack.
    assert host.replies_to(message) == []
    assert host.ack_of(message) == "processing"
    assert "SIGTERM received" in agent.stderr()

    async with agent_process(host, config, "again"):
        assert (await host.wait_for_reply(message, within_s=60)).content == (
            "echo: take your time")


async def test_bad_config_exits_2_with_one_line(host: HostSide) -> None:
    config = host.root / "broken.json"
    config.write_text('{"session_id": "not-a-session"}')
    code, stderr = await run_to_exit(host, config)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("sandbox_agent: ")
    assert "bad agent config" in stderr


async def test_missing_config_exits_2(host: HostSide) -> None:
    code, stderr = await run_to_exit(host, host.root / "nowhere.json")
    assert code == 2 and "cannot read config" in stderr


async def test_malformed_key_file_exits_2_without_echoing_it(host: HostSide) -> None:
    secret = "ab" * 32
    host.config.key_file.write_text(f"inbound={secret}\noutbound=short\n")
    code, stderr = await run_to_exit(host, host.write_config())
    assert code == 2 and "malformed" in stderr
    assert secret not in stderr


async def test_wrong_outbound_key_exits_3(host: HostSide) -> None:
    OutboundWriter(host.config.outbound_dir / "outbound.db", host.keys.outbound).close()
    wrong = SessionKeys(host.keys.inbound, RawKey.generate())
    host.config.key_file.write_text(wrong.render_file())
    code, stderr = await run_to_exit(host, host.write_config())
    assert code == 3, stderr
    assert "cannot use the queues" in stderr and wrong.outbound.hex() not in stderr
