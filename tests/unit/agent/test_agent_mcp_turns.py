"""The agent lists its MCP tools afresh at every turn: what the model is offered follows
the group's grant from one turn to the next, with no restart in between. The broker is
the real one, serving the hostile fake in its well-behaved mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from sandbox_agent.messages import AssistantMessage, Message, ModelReply
from sandbox_agent.processing import TurnProcessor
from sandbox_agent.providers import ToolSpec
from sandbox_agent.queue_io import AgentQueues, open_agent_queues
from sandbox_agent.tools import all_tools
from sandbox_agent.tools.mcp import McpTools
from tests.support.agent import HostSide
from tests.support.mcp import hostile_server, open_world, scratch_dir


class OfferedTools:
    """A model that answers at once and remembers the MCP tools each turn offered."""

    def __init__(self) -> None:
        self.turns: list[set[str]] = []

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        self.turns.append({t.name for t in tools if "__" in t.name})
        return ModelReply(AssistantMessage("done"), "end_turn")


@pytest.fixture
async def queues(host: HostSide) -> AsyncIterator[AgentQueues]:
    async with open_agent_queues(inbound_dir=host.config.inbound_dir,
                                 outbound_dir=host.config.outbound_dir, keys=host.keys,
                                 scratch_dir=host.config.scratch_dir) as opened:
        yield opened


async def test_each_turn_offers_the_mcp_tools_granted_at_that_turn(
        host: HostSide, queues: AgentQueues) -> None:
    model = OfferedTools()
    with scratch_dir() as base:
        async with open_world(base, hostile_server()) as world:
            await world.grant({"hostile": ["echo", "hang"]})
            session = await world.session()
            processor = TurnProcessor(config=host.config, queues=queues, provider=model,
                                      registry=all_tools(), system_prompt="S",
                                      mcp=McpTools(session.route.socket_path))
            await processor.start()
            for grant in ({"hostile": ["echo", "hang"]}, {"hostile": ["echo"]}, {}):
                await world.grant(grant)
                message = host.enqueue("which tools now?")
                await processor.process_pending()
                assert (await host.wait_for_reply(message)).content == "done"
    assert model.turns == [{"hostile__echo", "hostile__hang"}, {"hostile__echo"}, set()]
