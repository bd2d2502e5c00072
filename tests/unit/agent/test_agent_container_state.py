"""While a tool runs, the host can see which one, since when and for how long it may
take; afterwards the marker is gone. A crashed run's marker is cleared on start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ironclaw.contract.clock import now_us
from sandbox_agent.messages import AssistantMessage, Message, ModelReply, ToolCall
from sandbox_agent.processing import TurnProcessor
from sandbox_agent.providers import ToolSpec
from sandbox_agent.queue_io import AgentQueues
from sandbox_agent.tools import Tool, ToolContext, ToolRegistry
from sandbox_agent.tools.base import schema
from tests.support.agent import HostSide


class OneToolModel:
    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        if len(messages) == 1:
            return ModelReply(AssistantMessage("", (ToolCall("c1", "slow", {}),)), "tool_use")
        return ModelReply(AssistantMessage("finished"), "end_turn")


async def test_the_running_tool_is_visible_to_the_host(host: HostSide,
                                                       queues: AgentQueues,
                                                       nursery: trio.Nursery) -> None:
    release = trio.Event()
    running = trio.Event()

    async def slow(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
        running.set()
        await release.wait()
        return "ok"

    # A crashed run left its marker behind; starting clears it.
    await queues.commit(lambda b: b.set_container_state(
        current_tool="stale", tool_declared_timeout_ms=1, tool_started_at=now_us()))
    processor = TurnProcessor(
        config=host.config, queues=queues, provider=OneToolModel(),
        registry=ToolRegistry([Tool("slow", "slow", schema({}), slow, timeout_s=90)]),
        system_prompt="S")
    await processor.start()
    container = host.outbound().container
    assert container is not None and container.current_tool is None

    message = host.enqueue("run the slow tool")
    before = now_us()
    nursery.start_soon(processor.process_pending)
    with trio.fail_after(10):
        await running.wait()
    container = host.outbound().container
    assert container is not None
    assert (container.current_tool, container.tool_declared_timeout_ms) == ("slow", 90_000)
    assert container.tool_started_at is not None and container.tool_started_at >= before
    assert host.ack_of(message) == "processing"

    release.set()
    reply = await host.wait_for_reply(message)
    assert reply.content == "finished"
    container = host.outbound().container
    assert container is not None and container.current_tool is None
