"""Slash commands (answered without the model) and the history bound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from sandbox_agent.agent import Agent
from sandbox_agent.commands import parse_command
from sandbox_agent.history import bound_history, decode_history, encode_history
from sandbox_agent.messages import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResult,
    ToolResults,
    UserMessage,
)
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import HostSide


async def test_help_and_status_need_no_model(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, _agent = agent_stack
    await host.wait_for_reply(host.enqueue("hello"))
    help_reply = await host.wait_for_reply(host.enqueue("/help"))
    assert "/reset" in help_reply.content and "read_file" in help_reply.content
    status = await host.wait_for_reply(host.enqueue("  /STATUS please "))
    assert f"Session: {host.config.session_id}" in status.content
    assert "Model: mock (anthropic-messages via mock.ironclaw.invalid)" in status.content
    assert "History: 2 messages" in status.content
    assert "request_capability_change" in status.content
    assert len(model.requests) == 1  # only "hello" reached the model


async def test_reset_forgets_the_conversation(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    model, _agent = agent_stack
    await host.wait_for_reply(host.enqueue("remember teapot"))
    reset = host.enqueue("/reset")
    assert "cleared" in (await host.wait_for_reply(reset)).content
    assert host.ack_of(reset) == "completed"
    await host.wait_for_reply(host.enqueue("what did I say?"))
    assert len(model.requests) == 2
    assert [m["role"] for m in model.requests[-1].body["messages"]] == ["user"]
    status = await host.wait_for_reply(host.enqueue("/status"))
    assert "History: 2 messages" in status.content


async def test_unknown_slash_words_go_to_the_model(
        host: HostSide, agent_stack: tuple[FakeModelServer, Agent]) -> None:
    reply = await host.wait_for_reply(host.enqueue("/shrug"))
    assert reply.content == "echo: /shrug"


async def test_context_waits_past_a_command_for_the_next_turn(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    note = host.enqueue("note: bring snacks", engages=False)
    status = host.enqueue("/status")
    question = host.enqueue("what should I bring?")
    await start_agent()  # all three are seen in one pass
    reply = await host.wait_for_reply(question)
    assert "- note: bring snacks" in reply.content
    assert "Session:" in (await host.wait_for_reply(status)).content
    assert host.ack_of(note) == "completed"


def test_parse_command() -> None:
    assert parse_command("/help") == "/help"
    assert parse_command("/reset now") == "/reset"
    assert parse_command("/resetting") is None
    assert parse_command("please /help") is None


async def test_history_is_bounded_to_whole_recent_turns(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    host.with_config(limits=attrs.evolve(host.config.limits, history_max_messages=4))
    await start_agent()
    for word in ("one", "two", "three", "four"):
        await host.wait_for_reply(host.enqueue(word))
    sent = fake_model.requests[-1].body["messages"]
    # Two earlier turns fit in four messages, plus the message being answered.
    assert [m["content"][0]["text"] for m in sent] == [
        "two", "echo: two", "three", "echo: three", "four"]


def turn(text: str, *, tool: bool = False, size: int = 0) -> list[Message]:
    messages: list[Message] = [UserMessage(text + "x" * size)]
    if tool:
        messages += [AssistantMessage("", (ToolCall("c", "read_file", {}),)),
                     ToolResults((ToolResult("c", "data"),))]
    messages.append(AssistantMessage(f"answer {text}"))
    return messages


def test_bound_drops_oldest_whole_turns() -> None:
    messages = turn("a", tool=True) + turn("b") + turn("c", tool=True)
    assert bound_history(messages, max_messages=6, max_bytes=10_000) == (
        turn("b") + turn("c", tool=True))
    # With five, "b" goes too: keeping it would mean cutting into "c", and half a turn
    # is never kept.
    assert bound_history(messages, max_messages=5, max_bytes=10_000) == turn("c", tool=True)
    bounded = bound_history(messages, max_messages=100, max_bytes=10_000)
    assert bounded == messages


def test_bound_by_bytes_and_a_turn_too_big_to_keep() -> None:
    messages = turn("a", size=3000) + turn("b", size=10)
    assert bound_history(messages, max_messages=100, max_bytes=1000) == turn("b", size=10)
    assert bound_history(turn("huge", size=5000), max_messages=100, max_bytes=1000) == []


def test_stored_tool_output_is_trimmed() -> None:
    big = ToolResults((ToolResult("c", "z" * 50_000),))
    messages: list[Message] = [
        UserMessage("q"), AssistantMessage("", (ToolCall("c", "read_file", {}),)), big,
        AssistantMessage("done")]
    bounded = bound_history(messages, max_messages=100, max_bytes=1_000_000)
    stored = bounded[2]
    assert isinstance(stored, ToolResults)
    assert len(stored.results[0].content) < 9000 and "not kept" in stored.results[0].content


def test_history_decoding_is_forgiving() -> None:
    messages = turn("a", tool=True)
    assert decode_history(encode_history(messages)) == messages
    assert decode_history(None) == []
    assert decode_history("not json") == []
    assert decode_history('{"version": 99, "messages": []}') == []
    assert decode_history('{"version": 1, "messages": [{"role": "wizard"}]}') == []
    # A transcript that starts mid-turn is repaired to start at a user message.
    orphan = encode_history([AssistantMessage("stray"), *messages])
    assert decode_history(orphan) == messages
