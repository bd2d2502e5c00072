"""A turn's claim commits only once the turn proves slow (sandbox_agent/processing.py):
a fast turn is one outbound commit, reply and ``completed`` ack together; a slow one
is claimed while it runs; a turn that reaches a tool is claimed with the tool's
marker. Commits are counted on the outbound fence, which every commit moves by two."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from sandbox_agent.messages import AssistantMessage, Message, ModelReply, ToolCall
from sandbox_agent.processing import TurnProcessor
from sandbox_agent.providers import ToolSpec
from sandbox_agent.queue_io import AgentQueues
from sandbox_agent.tools import Tool, ToolContext, ToolRegistry
from sandbox_agent.tools.base import schema
from tests.support.agent import HostSide


class GatedModel:
    """Echoes, once ``gate`` is set (set from the start: a fast model)."""

    def __init__(self, *, tool: str | None = None) -> None:
        self.gate = trio.Event()
        self.asked = trio.Event()
        self._tool = tool

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        self.asked.set()
        await self.gate.wait()
        if self._tool is not None and len(messages) == 1:
            return ModelReply(AssistantMessage("", (ToolCall("c1", self._tool, {}),)),
                              "tool_use")
        return ModelReply(AssistantMessage("done"), "end_turn")


async def processor_for(host: HostSide, queues: AgentQueues, model: GatedModel, *,
                        claim_after_s: float, tools: ToolRegistry | None = None
                        ) -> TurnProcessor:
    processor = TurnProcessor(config=host.config, queues=queues, provider=model,
                              registry=tools or ToolRegistry([]), system_prompt="S",
                              claim_after_s=claim_after_s)
    await processor.start()
    return processor


def fence(host: HostSide) -> int:
    value = host.reader.fence()
    assert value is not None
    return value


async def test_a_fast_turn_is_one_commit_and_never_claimed(host: HostSide,
                                                          queues: AgentQueues) -> None:
    model = GatedModel()
    model.gate.set()
    processor = await processor_for(host, queues, model, claim_after_s=60)
    message = host.enqueue("quick")
    before = fence(host)
    await processor.process_pending()
    assert fence(host) - before == 2  # one commit
    assert host.ack_of(message) == "completed"
    assert [r.content for r in host.replies_to(message)] == ["done"]


async def test_claimed_before_the_turn_when_the_delay_is_zero(host: HostSide,
                                                             queues: AgentQueues) -> None:
    model = GatedModel()
    model.gate.set()
    processor = await processor_for(host, queues, model, claim_after_s=0)
    host.enqueue("quick")
    before = fence(host)
    await processor.process_pending()
    assert fence(host) - before == 4  # the claim, then the reply


async def test_a_slow_turn_is_claimed_while_it_runs(host: HostSide, queues: AgentQueues,
                                                   nursery: trio.Nursery) -> None:
    model = GatedModel()
    processor = await processor_for(host, queues, model, claim_after_s=0.05)
    message = host.enqueue("think hard")
    nursery.start_soon(processor.process_pending)
    await host.wait_until(lambda: host.ack_of(message) == "processing")
    assert host.replies_to(message) == []
    model.gate.set()
    reply = await host.wait_for_reply(message)
    assert reply.content == "done" and host.ack_of(message) == "completed"


async def test_a_tool_call_claims_the_turn_with_its_marker(host: HostSide,
                                                          queues: AgentQueues,
                                                          nursery: trio.Nursery) -> None:
    running, release = trio.Event(), trio.Event()

    async def slow(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
        running.set()
        await release.wait()
        return "ok"

    model = GatedModel(tool="slow")
    model.gate.set()
    processor = await processor_for(
        host, queues, model, claim_after_s=60,
        tools=ToolRegistry([Tool("slow", "slow", schema({}), slow, timeout_s=90)]))
    message = host.enqueue("use the tool")
    nursery.start_soon(processor.process_pending)
    with trio.fail_after(10):
        await running.wait()
    container = host.outbound().container
    assert container is not None and container.current_tool == "slow"
    assert host.ack_of(message) == "processing"
    release.set()
    assert (await host.wait_for_reply(message)).content == "done"
