"""The whole agent in-process: real queue files, the fake model on a real unix socket,
the host played through the contract's host handles."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ironclaw.contract.actions import CapabilityRequest, parse_system_action
from ironclaw.contract.agent_config import MOCK_MODEL_HOST
from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import ChangeKind, MessageKind
from ironclaw.contract.layout import read_heartbeat
from ironclaw.contract.rows import Destination
from sandbox_agent.agent import Agent
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import FAST, HostSide


async def test_hello_is_answered_once_and_acked_completed(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, agent = agent_stack
    message = host.enqueue("hello")
    reply = await host.wait_for_reply(message)

    assert reply.content == "echo: hello"
    assert host.ack_of(message) == "completed"
    # Routed back to where it came from: the agent names no chat, the host decides.
    assert (reply.platform_id, reply.channel_type, reply.thread_id, reply.destination) == (
        None, None, None, None)
    # More passes (safety polls, wakes) must not answer it again.
    passes = agent.passes
    agent.wake()
    await host.wait_until(lambda: agent.passes >= passes + 3)
    assert len(host.replies_to(message)) == 1
    assert len(model.requests) == 1


async def test_model_requests_carry_no_credentials_and_name_the_upstream(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, _agent = agent_stack
    await host.wait_for_reply(host.enqueue("hi"))
    (request,) = model.requests
    assert request.path == "/v1/messages"
    assert request.headers["host"] == MOCK_MODEL_HOST
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert not {"authorization", "x-api-key", "proxy-authorization", "cookie"} & set(
        request.headers)
    assert request.body["model"] == "mock"
    assert "request_capability_change" in request.body["system"]
    assert "Test agent" in request.body["system"]  # the persona follows the preamble
    assert request.body["system"].index("cannot change yourself") < request.body[
        "system"].index("Test agent")
    assert {t["name"] for t in request.body["tools"]} >= {"read_file", "send_message"}


async def test_read_file_answer_travels_through_the_tool_result_path(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, _agent = agent_stack
    (host.workspace / "notes.txt").write_text("buy oat milk")
    message = host.enqueue('tool:read_file {"path":"notes.txt"}')
    reply = await host.wait_for_reply(message)

    assert reply.content == "tool result: buy oat milk"
    assert len(model.requests) == 2
    tool_result = model.requests[1].body["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert tool_result["is_error"] is False
    # The tool marker is cleared once the tool is done.
    container = host.outbound().container
    assert container is not None and container.current_tool is None


async def test_capability_request_becomes_a_system_row_and_changes_nothing(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    _model, agent = agent_stack
    tools_before = agent.registry.names()
    directive = {"kind": "enabled_tools", "payload": {"add": ["web_search"]},
                 "reason": "to look things up"}
    message = host.enqueue(f"tool:request_capability_change {json.dumps(directive)}")
    reply = await host.wait_for_reply(message)

    system_rows = [m for m in host.outbound().messages if m.kind is MessageKind.SYSTEM]
    assert len(system_rows) == 1
    action = parse_system_action(system_rows[0].content)
    assert action == CapabilityRequest(kind=ChangeKind.ENABLED_TOOLS,
                                       payload='{"add":["web_search"]}',
                                       reason="to look things up")
    assert system_rows[0].in_reply_to is None  # only the answer itself replies
    assert "A human will decide" in reply.content
    # Nothing applied: the same tools, and the model is still offered the same set.
    assert agent.registry.names() == tools_before
    await host.wait_for_reply(second := host.enqueue("again"))
    assert host.replies_to(second)[0].content == "echo: again"


async def test_a_forbidden_kind_is_refused_and_sends_nothing(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    directive = {"kind": "create_agent", "payload": {"name": "twin"}}
    message = host.enqueue(f"tool:request_capability_change {json.dumps(directive)}")
    reply = await host.wait_for_reply(message)
    assert reply.content.startswith("tool result: kind must be one of")
    assert [m for m in host.outbound().messages if m.kind is MessageKind.SYSTEM] == []


async def test_context_rows_ride_along_with_the_next_engaging_row(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, agent = agent_stack
    first = host.enqueue("the meeting moved to 3pm", engages=False)
    await host.wait_until(lambda: agent.passes >= 3)
    # Context alone wakes nothing: no model call, no ack, still pending.
    assert model.requests == [] and host.ack_of(first) is None

    message = host.enqueue("what time is it at?")
    reply = await host.wait_for_reply(message)
    assert "- the meeting moved to 3pm" in reply.content
    assert reply.content.endswith("what time is it at?")
    assert host.ack_of(first) == "completed"
    assert host.replies_to(first) == []


async def test_send_message_to_a_named_destination_commits_with_the_turn(
        host: HostSide, fake_model: FakeModelServer,
        start_agent: Callable[..., Any]) -> None:
    host.inbound.set_destinations([Destination(name="family", type="channel",
                                               display_name="Family chat")])
    await start_agent()
    message = host.enqueue('tool:send_message {"text":"dinner at 7","to":"family"}')
    reply = await host.wait_for_reply(message)
    sent = [m for m in host.outbound().messages if m.destination == "family"]
    assert [m.content for m in sent] == ["dinner at 7"]
    assert sent[0].seq < reply.seq  # the tool's row, then the reply, in one commit


async def test_openai_chat_shape_round_trip(
        host: HostSide, fake_model: FakeModelServer,
        start_agent: Callable[..., Any]) -> None:
    provider = host.config.provider
    host.with_config(provider=type(provider)(api="openai-chat", host=provider.host,
                                             model="mock", max_tokens=256))
    await start_agent()
    (host.workspace / "todo.txt").write_text("water the plants")
    plain = host.enqueue("hello there")
    assert (await host.wait_for_reply(plain)).content == "echo: hello there"
    tooled = host.enqueue('tool:read_file {"path":"todo.txt"}')
    assert (await host.wait_for_reply(tooled)).content == "tool result: water the plants"

    paths = {r.path for r in fake_model.requests}
    assert paths == {"/v1/chat/completions"}
    last = fake_model.requests[-1].body
    assert last["messages"][0]["role"] == "system"
    assert last["tools"][0]["type"] == "function"
    assert last["messages"][-1]["role"] == "tool"


async def test_history_survives_a_restart(
        host: HostSide, fake_model: FakeModelServer, nursery: trio.Nursery) -> None:
    async with trio.open_nursery() as first_life:
        agent = Agent(host.config, host.keys, FAST)
        await first_life.start(agent.run)
        await host.wait_for_reply(host.enqueue("remember the word teapot"))
        first_life.cancel_scope.cancel()

    second = Agent(host.config, host.keys, FAST)
    await nursery.start(second.run)
    await host.wait_for_reply(host.enqueue("what was the word?"))
    messages = fake_model.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "remember the word teapot"


async def test_heartbeat_file_is_written_and_renewed(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    path = host.config.outbound_dir / "heartbeat"
    await host.wait_until(lambda: read_heartbeat(path) is not None)
    first = read_heartbeat(path)
    assert first is not None
    await host.wait_until(lambda: (read_heartbeat(path) or 0) > first, within_s=5)


async def test_the_ack_and_prune_cycle_keeps_outbound_bounded(
        host: HostSide, fake_model: FakeModelServer,
        start_agent: Callable[..., Any]) -> None:
    await start_agent(attrs.evolve(FAST, prune_interval_s=0.0, outbound_retention_s=0.0))
    answered = []
    for index in range(5):
        message = host.enqueue(f"message {index}")
        answered.append((await host.wait_for_reply(message)).content)
        # The host's half of the cycle: settle inbound from the acks, record what it
        # delivered, and prune what is finished.
        poll = host.outbound()
        host.inbound.apply_acks(poll.acks)
        host.inbound.record_outbound_handled(poll.cursor)
        host.inbound.prune(finished_before=now_us() + 1)
    assert answered == [f"echo: message {index}" for index in range(5)]

    def drained() -> bool:
        poll = host.outbound()
        return not poll.messages and not poll.acks

    await host.wait_until(drained)
    assert len(fake_model.requests) == 5  # pruning never made a row look new again
