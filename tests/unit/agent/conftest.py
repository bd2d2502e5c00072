"""A session as the host would lay it out, on real SQLCipher files, with the host side
played through the contract's own host handles (InboundWriter, OutboundReader), and
the fake model proxy on a real unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.agent_config import (
    MOCK_MODEL_HOST,
    AgentConfig,
    AgentLimits,
    PersonaDocs,
    ProviderConfig,
)
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.queue import InboundWriter, OutboundReader
from sandbox_agent.agent import Agent, AgentOptions
from sandbox_agent.queue_io import AgentQueues, open_agent_queues
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import FAST, HostSide


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to about 100 bytes; pytest's tmp paths can be
    longer, so sockets live in a short directory of their own."""
    path = Path(tempfile.mkdtemp(prefix="ica-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host(tmp_path: Path, short_dir: Path) -> Iterator[HostSide]:
    keys = SessionKeys.generate()
    layout = SessionLayout.under(tmp_path / "state", new_session_id())
    queues = layout.create()
    key_file = tmp_path / "session.key"
    key_file.write_text(keys.render_file())
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    config = AgentConfig(
        session_id=layout.session_id, agent_group_id="ag_test",
        provider=ProviderConfig(api="anthropic-messages", host=MOCK_MODEL_HOST,
                                model="mock", max_tokens=512),
        persona=PersonaDocs(identity="Test agent", soul="", instructions="Be brief."),
        inbound_dir=queues.inbound_dir, outbound_dir=queues.outbound_dir,
        key_file=key_file, socket_dir=short_dir, workspace=workspace, scratch_dir=scratch,
        limits=AgentLimits(provider_retries=3, breaker_failures=5, breaker_cooldown_s=30.0),
        heartbeat_interval_s=0.2, safety_poll_interval_s=0.05)
    inbound = InboundWriter(queues.inbound_db, keys.inbound)
    side = HostSide(tmp_path, short_dir, keys, config, inbound,
                    OutboundReader(queues.outbound_db, keys.outbound, scratch_dir=scratch))
    yield side
    inbound.close()


@pytest.fixture
async def fake_model(host: HostSide, nursery: trio.Nursery) -> FakeModelServer:
    server = FakeModelServer()
    await nursery.start(server.serve, host.config.model_socket)
    return server


@pytest.fixture
def start_agent(host: HostSide, nursery: trio.Nursery
                ) -> Callable[..., Any]:
    """Start an in-process agent on the host's current config; it is cancelled with the
    test's nursery, as SIGTERM would cancel it in production."""
    async def start(options: AgentOptions = FAST) -> Agent:
        agent = Agent(host.config, host.keys, options)
        await nursery.start(agent.run)
        return agent

    return start


@pytest.fixture
async def agent_stack(fake_model: FakeModelServer, start_agent: Callable[..., Any]
                      ) -> AsyncIterator[tuple[FakeModelServer, Agent]]:
    yield fake_model, await start_agent()


@pytest.fixture
async def queues(host: HostSide) -> AsyncIterator[AgentQueues]:
    """The agent's queue handles on ``host``'s files, for tests that drive a
    ``TurnProcessor`` directly."""
    async with open_agent_queues(inbound_dir=host.config.inbound_dir,
                                 outbound_dir=host.config.outbound_dir, keys=host.keys,
                                 scratch_dir=host.config.scratch_dir) as opened:
        yield opened
